"""Interop with other SNN libraries through NIR, the Neuromorphic Intermediate Representation (NIR.md).

- :func:`from_nir` (``sast.interop.nir_import``): a NIR graph or ``.nir`` file of snnTorch, Norse, SpikingJelly
  or any other writer as this toolkit's :class:`sast.model.SNN`, exactly or not at all
  (:class:`NIRImportError`, one line naming the file and node). dt and the reset are not in a NIR file and
  must be given (``LIBRARY_DT``: snnTorch and SpikingJelly 1e-4, Norse 1e-3).
- :func:`to_nir` (``sast.interop.nir_export``): an SNN as a ``nir.NIRGraph`` (``nir.write`` saves it), with
  its time-mean readout and its reset recorded in the graph's metadata.

``nir`` is an optional dependency (``pip install 'sast-toolkit[nir]'``); it is imported when a function runs.
"""

from sast.interop._common import NIRImportError
from sast.interop.nir_export import to_nir
from sast.interop.nir_import import LIBRARY_DT, from_nir

__all__ = ["LIBRARY_DT", "NIRImportError", "from_nir", "to_nir"]

"""Interop with other SNN libraries through NIR, the Neuromorphic Intermediate Representation (NIR.md).

- :func:`from_nir` (``sast.interop.nir_import``): a NIR graph or ``.nir`` file of snnTorch, Norse, SpikingJelly
  or any other writer as this toolkit's :class:`sast.model.SNN`, exactly or not at all
  (:class:`NIRImportError`, one line naming the file and node). dt and the reset are not in a NIR file and
  must be given (``LIBRARY_DT``: snnTorch and SpikingJelly 1e-4, Norse 1e-3).
- :func:`to_nir` (``sast.interop.nir_export``): an SNN as a ``nir.NIRGraph`` (``nir.write`` saves it), with
  its time-mean readout and its reset recorded in the graph's metadata (:func:`sast_metadata` reads it back).
- :func:`read_graph`: a ``.nir`` file's graph, or one line naming the file where it is not a readable one.

The command lines take a ``.nir`` file wherever they take a checkpoint: ``sast.model_file`` loads either.

``nir`` is an optional dependency (``pip install 'sast-toolkit[nir]'``); it is imported when a function runs.
"""

from sast.interop._common import NIRImportError
from sast.interop.nir_export import to_nir
from sast.interop.nir_import import LIBRARY_DT, from_nir, read_graph, sast_metadata

__all__ = ["LIBRARY_DT", "NIRImportError", "from_nir", "read_graph", "sast_metadata", "to_nir"]

"""Composition roots: the command lines that wire the layers together.

Layers import downward only (runfolder <- theory <- sast <- checks <- reports); the
programs that need several layers at once live here, at the top:

- :mod:`apps.wiring`: the live checks monitor as training callbacks (``sast.train --monitor``);
- :mod:`apps.train`: the training command line (``python -m sast.train``);
- :mod:`apps.demo`: the main job (``python -m sast.demo``);
- :mod:`apps.experiments`: sweeps (``python -m sast.experiments``: rho-sweep, grid).

``python -m sast.train``, ``python -m sast.demo`` and ``python -m sast.experiments`` stay
the commands: ``sast/train/__main__.py``, ``sast/demo.py`` and ``sast/experiments.py`` are
their entry points, which call into this package (the only imports of ``apps`` below it,
named in ``tests/unit/test_layers.py``'s ``ENTRY_POINTS``).
"""

"""Composition roots: the command lines that wire the layers together.

Layers import downward only (runfolder <- theory <- sast <- checks <- reports); the
programs that need several layers at once live here, at the top:

- :mod:`apps.wiring`: the live checks monitor as training callbacks (``sast.train --monitor``);
- :mod:`apps.demo`: the main job (``python -m sast.demo``);
- :mod:`apps.experiments`: sweeps (``python -m sast.experiments``: rho-sweep, grid).

``python -m sast.demo`` and ``python -m sast.experiments`` stay the commands: those
modules are entry points that call into this package.
"""

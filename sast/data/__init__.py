"""Event data: event arrays, binning to frames, a simulated event sensor, datasets by name.

Public API:

- ``event_dataset(name, split, root=None, *, seed, limit, progress, download)``: a sequence of
  ``(events, label)``;
- ``frame_dataset(name, split, T, root=None, *, clip, downsample, duration, cache_dir, seed, limit, progress,
  download)``: a ``FrameDataset`` of binned, clipped frames, cached on disk;
- ``to_frames``: events to frames (T, P, H, W); ``EVENT_DTYPE`` the event layout (tonic's);
- ``SensorParams``, ``simulate_events``, ``simulate_batch``: the DVS model;
- ``download(name, splits, root)``: fetch a real dataset's splits with tonic (``--download``);
- ``DATASETS``, ``dataset_names``, ``get_spec``: the names and what they stand for: the generated
  ``synth-nmnist`` and ``synth-gesture`` (modules ``synth_nmnist``, ``synth_gesture``), and the real
  ``nmnist`` and ``dvsgesture`` read from the user's files (``sast.data.real``; tonic is optional,
  imported only when needed, and nothing is downloaded without ``download=True``).
"""

from sast.data.cache import CACHE_ENV, cache_root
from sast.data.events import DEFAULT_CLIP, EVENT_DTYPE, SPLITS, EventSet, make_events, to_frames
from sast.data.registry import (
    DATASETS,
    DOWNLOAD_HELP,
    DatasetSpec,
    FrameDataset,
    dataset_names,
    download,
    event_dataset,
    frame_dataset,
    get_spec,
)
from sast.data.sensor import SensorParams, simulate_batch, simulate_events

__all__ = [
    "CACHE_ENV",
    "DATASETS",
    "DOWNLOAD_HELP",
    "DEFAULT_CLIP",
    "EVENT_DTYPE",
    "SPLITS",
    "DatasetSpec",
    "EventSet",
    "FrameDataset",
    "SensorParams",
    "cache_root",
    "dataset_names",
    "download",
    "event_dataset",
    "frame_dataset",
    "get_spec",
    "make_events",
    "simulate_batch",
    "simulate_events",
    "to_frames",
]

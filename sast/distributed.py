"""Data-parallel training on torch.distributed, as ``sast.train`` uses it under torchrun.

    torchrun --nproc_per_node=2 -m sast.train --method sast --rho 0.3

A process started by torchrun finds ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in its
environment; :func:`init_from_env` then joins the process group (gloo on the CPU, nccl
on CUDA with device ``cuda:LOCAL_RANK``) and returns a :class:`Context`. Without those
variables it returns the single-process context, under which every method here is the
identity or a no-op, so a plain ``python -m sast.train`` runs exactly as before.

What the context provides, and why:

- :meth:`Context.shard`: the rank's equal, contiguous part of a *global* minibatch of
  size b (``--batch-size``). Every rank draws the same permutations from the same
  seeded generators, so the global minibatches are the single-process ones, and since
  the mean loss over b samples is the average of the W shards' mean losses over b/W
  samples, the averaged gradient is the single-process gradient up to float rounding.
- :meth:`Context.wrap`: the model in DistributedDataParallel, through whose
  ``backward()`` the gradients are averaged (``sast.sam.ddp_sgd_step``,
  ``sast.sam.ddp_sam_step``).
- :meth:`Context.on_main`: run a function on rank 0 only (the run folder, the
  checkpoint, the frame cache) and hand its result, or its exception, to every rank,
  so that all ranks stop with the same one-line error instead of waiting forever; the
  broadcast is also where the other ranks wait for rank 0 (the end of an epoch).

Rank 0 alone writes the run folder and runs the callbacks (the checks monitor); the
other ranks log to :class:`NullLog`. References: PyTorch, "Getting started with
distributed data parallel"; "torchrun (elastic launch)".
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
"""The variables torchrun sets; all three present means a distributed run."""

# Rank 0 evaluates the whole validation and test sets, writes checkpoints and runs the
# monitor while the other ranks wait at a barrier or in the next all-reduce; on a large
# data set that can outlast torch's default timeout (10 minutes for nccl).
TIMEOUT = timedelta(minutes=60)

T = TypeVar("T")


def launched() -> bool:
    """True in a process started by torchrun (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` all set)."""
    present = [k for k in ENV if k in os.environ]
    if present and len(present) != len(ENV):
        missing = [k for k in ENV if k not in os.environ]
        raise ValueError(f"distributed environment incomplete: {', '.join(present)} set but {', '.join(missing)} "
                         "not; launch with torchrun, or unset them for a single process")
    return bool(present)


def env_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun), known before any init."""
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def env_rank() -> int:
    """This process's rank from the environment (0 outside torchrun), usable before any init."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class Context:
    """Where this process stands in a data-parallel run; the default is a single process."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None  # None: no process group (a plain single process)

    @property
    def enabled(self) -> bool:
        """True when a process group is in use (under torchrun, even with one process)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run folder, evaluates and runs the callbacks."""
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
        if self.enabled and requested.startswith("cuda"):
            return torch.device("cuda", self.local_rank)
        return torch.device(requested)

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's equal, contiguous part of a global minibatch of indices (len divisible by world_size)."""
        if self.world_size == 1:
            return idx
        return idx.view(self.world_size, -1)[self.rank]

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel (which broadcasts rank 0's parameters), or itself."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 only; every rank returns its result or raises its exception."""
        if not self.enabled:
            return fn()
        box: list[Any] = [None]
        error: Exception | None = None
        if self.is_main:
            try:
                box[0] = (True, fn())
            except Exception as e:  # handed to the other ranks, then re-raised here with its traceback
                error = e
                box[0] = (False, _portable(e))
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def describe(self) -> dict[str, Any]:
        """What config.json records of the launch."""
        return {"world_size": self.world_size, "backend": self.backend}

    def launcher(self) -> str:
        """The command prefix that starts this launch again: ``python`` or ``torchrun --nproc_per_node=N``."""
        if not self.enabled:
            return "python"
        local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
        nodes = self.world_size // local if local else 1
        return f"torchrun{f' --nnodes={nodes}' if nodes > 1 else ''} --nproc_per_node={local}"


def _portable(e: Exception) -> Exception:
    """``e`` if it pickles (so the other ranks raise the same type), else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


SINGLE = Context()


def init_from_env(device: str = "cpu") -> Context:
    """Join the process group torchrun describes (once per process), or the single-process context.

    gloo for ``device`` cpu, nccl for cuda (and ``torch.cuda.set_device(LOCAL_RANK)``).
    Under torchrun with more than one process, ``--device cuda:N`` is refused (each
    process takes ``cuda:LOCAL_RANK``).
    """
    if not launched():
        return SINGLE
    world, rank, local = (int(os.environ[k]) for k in ENV)
    cuda = device.startswith("cuda")
    if cuda and device != "cuda" and world > 1:
        raise ValueError(f"--device {device} under torchrun: pass --device cuda (process LOCAL_RANK uses "
                         "cuda:LOCAL_RANK)")
    backend = "nccl" if cuda else "gloo"
    if dist.is_initialized():
        if dist.get_backend() != backend:
            raise ValueError(f"the process group uses {dist.get_backend()}, but --device {device} needs {backend}")
    else:
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend, timeout=TIMEOUT)
    return Context(world_size=world, rank=rank, local_rank=local, backend=backend)


def shutdown(barrier: bool = True) -> None:
    """Leave the process group, if this process joined one; every rank calls it at the same point.

    First the garbage collector: DistributedDataParallel sits in reference cycles, and its
    reducer holds the gloo process group; left to interpreter exit, their C++ teardown
    aborted a rank now and then ("terminate called without an active exception": 6 of
    44 two-process CPU runs without the collection, a barrier alone did not help; 0 of 30
    with it). Then a barrier, so that no rank tears its connections down while another
    still uses them; ``barrier=False`` after an error, where another rank may have
    stopped elsewhere and a barrier could wait for it forever.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


class NullLog:
    """The metrics log of ranks other than 0: records are dropped (rank 0 writes metrics.jsonl)."""

    def log(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def note(message: str) -> None:
    """A one-line notice on stderr, from rank 0 only."""
    if env_rank() == 0:
        print(message, file=sys.stderr)

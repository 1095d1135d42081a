"""Where freed tensor memory goes between uses: kept in the process (the commands' setting) or handed back.

PyTorch's CPU tensors come from ``malloc``. glibc serves every block above its mmap threshold (which
grows to at most 32 MB) with a fresh ``mmap`` and unmaps it on ``free``, so a large tensor that an
SNN's recurrence allocates at every pass, a (B, T, C, H, W) state of a conv net (42 MB at batch 64,
T 20, 32 x 16 x 16), is faulted in page by page each time it is allocated. On the 3-conv-layer net
of the README, ``python -m checks.all`` took 81 s and 15 million minor page faults on 2 CPU cores;
with the policy below, 62 s and 1.1 million (the same records).

:func:`retain_freed_memory` makes glibc serve every block from its heap and never shrink it on
``free`` (``mallopt``: ``M_MMAP_MAX`` 0, ``M_TRIM_THRESHOLD`` at its maximum), and serve every thread
from that one heap (``M_ARENA_MAX`` 1: what a worker thread frees, the main thread reuses, instead of
each thread keeping its own): freed memory is then reused without new faults, as PyTorch's CUDA
caching allocator reuses device memory. The resident
memory then stays at the process's peak until :func:`release_freed_memory` (glibc's ``malloc_trim``)
hands the free pages back, which a command calls where one phase ends and a smaller one begins.
The commands (``sast.train``, ``sast.evaluate``, ``sast.experiments``, ``sast.demo``, the checks)
call :func:`retain_freed_memory` before their work (:func:`sast.process.prepare`); a program that
imports the library decides for itself. ``SAST_MALLOC=system`` in the environment leaves glibc's
own policy. Elsewhere than glibc (macOS, musl) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache

from sast._env import env_choice

__all__ = ["ENV", "release_freed_memory", "retain_freed_memory", "retained"]

ENV = "SAST_MALLOC"
"""``SAST_MALLOC=system``: :func:`retain_freed_memory` leaves glibc's allocator policy as it is (``retain`` or
unset: the commands' policy; any other value is refused)."""
_CHOICES = ("retain", "system")

# glibc's mallopt parameters (malloc.h) and the largest trim threshold mallopt accepts (an int)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_TRIM_MAX = 2**31 - 1

_retained = False


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only: musl and macOS have no mallopt parameters of these numbers
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both must exist)
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory() -> bool:
    """Serve every allocation from the heap and keep freed memory there (glibc); True where now in effect.

    Idempotent. Returns False (changing nothing) off glibc or with ``SAST_MALLOC=system``; raises ValueError (a
    command's bad input: one line, exit 2) for a value of ``SAST_MALLOC`` other than those two and empty."""
    global _retained
    choice = env_choice(ENV, _CHOICES)
    if _retained:
        return True
    libc = _glibc()
    if libc is None or choice == "system":
        return False
    # mallopt returns 1 on success
    if not all(libc.mallopt(param, value) == 1
               for param, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_MAX), (_M_ARENA_MAX, 1))):
        return False
    _retained = True
    return True


def retained() -> bool:
    """Whether :func:`retain_freed_memory` is in effect in this process."""
    return _retained


def release_freed_memory() -> None:
    """Hand the memory freed so far back to the system (a garbage collection, then glibc's malloc_trim).

    glibc keeps freed blocks in its heap (all of them under :func:`retain_freed_memory`; below its mmap
    threshold otherwise), so one phase's temporaries would stay resident under the next phase's peak.
    ``checks.all`` calls this between checks: its peak is then the largest check's, not a sum."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)

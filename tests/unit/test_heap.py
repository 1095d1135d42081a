"""sast.heap: the commands keep freed tensor memory in the heap (glibc), and hand it back when told to.

Each case runs in a fresh interpreter: the allocator's policy is the whole process's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sast import heap

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(heap._glibc() is None or not sys.platform.startswith("linux"),
                                reason="the policy is glibc's (elsewhere retain_freed_memory is a no-op)")

# A 64 MB tensor, allocated, touched and freed; then where its memory went: glibc's mmapped bytes
# (mallinfo2's hblkhd) while it lived, and the resident memory after its free and after release_freed_memory.
# Then 16 MB that a worker thread allocated and freed, and how much the resident memory grows when the main
# thread allocates as much.
PROBE = textwrap.dedent("""
    import ctypes, json, sys, threading
    import torch
    from sast import heap

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    retained = heap.retain_freed_memory() if sys.argv[1] == "retain" else False
    mapped0 = libc.mallinfo2().hblkhd
    t = torch.ones(16 * 2**20)  # 64 MB, every page touched
    mapped = libc.mallinfo2().hblkhd - mapped0
    del t
    after_free = rss_mb()
    heap.release_freed_memory()
    after_release = rss_mb()

    def work():  # a worker thread's 16 MB, freed, then as much in the main thread
        a = torch.ones(4 * 2**20)
        del a

    th = threading.Thread(target=work)
    th.start()
    th.join()
    r0 = rss_mb()
    b = torch.ones(4 * 2**20)
    thread_growth = rss_mb() - r0
    print(json.dumps({"retained": retained, "again": heap.retain_freed_memory() if retained else None,
                      "mapped_mb": mapped / 2**20, "thread_growth_mb": thread_growth, "after_free_mb": after_free, "after_release_mb": after_release}))
""")


def _probe(mode: str, **env: str) -> dict:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018 (glibc 2.33 and later)
    except (OSError, AttributeError):
        pytest.skip("this glibc has no mallinfo2 to read the heap with")
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **env}, check=True)
    return json.loads(out.stdout)


def test_retained_memory_comes_from_the_heap_stays_after_free_and_goes_back_on_release() -> None:
    r = _probe("retain")
    assert r["retained"] is True and r["again"] is True  # in effect, and idempotent
    assert r["mapped_mb"] == 0  # served from the heap, not by a fresh mmap
    assert r["thread_growth_mb"] < 4  # what a worker thread freed, the main thread reuses (one arena)
    assert r["after_free_mb"] - r["after_release_mb"] > 48  # kept when freed; handed back by release_freed_memory


def test_glibcs_own_policy_maps_large_blocks_and_unmaps_them_on_free() -> None:
    """The reference the retained policy is measured against: what glibc does by itself."""
    r = _probe("system")
    assert r["mapped_mb"] >= 64  # a fresh mmap, faulted in page by page
    assert r["thread_growth_mb"] > 12  # mapped again, faulted in again
    assert abs(r["after_free_mb"] - r["after_release_mb"]) < 16  # already gone at free: nothing left to release


def test_sast_malloc_system_leaves_glibcs_policy() -> None:
    r = _probe("retain", **{heap.ENV: "system"})
    assert r["retained"] is False and r["mapped_mb"] >= 64


def test_a_mistyped_sast_malloc_is_refused_in_one_line_by_the_commands(monkeypatch, tmp_path, capsys) -> None:
    from checks.all import main

    monkeypatch.setenv(heap.ENV, "sytem")
    with pytest.raises(ValueError, match="SAST_MALLOC='sytem': expected one of retain, system"):
        heap.retain_freed_memory()
    assert main(["--model", str(tmp_path / "ckpt.pt")]) == 2  # before the model is read
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SAST_MALLOC" in err[0]

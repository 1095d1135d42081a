"""Compile ``kernels.c`` with the machine's C compiler at first use, keep the library in a cache, load it.

The build needs nothing but a C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``): no Python headers,
no torch headers, no build backend; it takes a few seconds, once per machine. The library is cached under
``$SAST_NATIVE_CACHE``, else ``$XDG_CACHE_HOME/sast-toolkit/native``, else ``~/.cache/sast-toolkit/native``,
in a file named by a hash of the source, the compiler, its flags and the CPU (it is built for the CPU
it runs on), so a shared home directory on a cluster of mixed machines keeps one per kind of machine.
A new library is written under a temporary name and renamed into place, so processes that build at
the same time never load a half-written file. A cache directory that cannot be written falls back to
a temporary directory of this process, removed once the library is loaded (each such process then
builds its own). Any failure (no compiler, a compiler error) leaves the torch
path in use and says why in :func:`status`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).with_name("kernels.c")
HEADERS = (Path(__file__).with_name("lif_impl.h"), Path(__file__).with_name("pool_impl.h"))
"""Included by SOURCE: part of the cache key."""
BASE_FLAGS = ("-O3", "-std=c99", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math")
"""No contraction into fused multiply-adds and no fast-math: every element's arithmetic is the same IEEE
operations in a vectorised loop and its scalar remainder, on every machine (see kernels.c)."""
TUNED_FLAGS = ("-march=native",)
OPENMP_FLAGS = ("-fopenmp",)
"""Tried in this order: OpenMP and the CPU's own instructions, OpenMP alone, the CPU's instructions alone, neither
(Apple's clang, for one, refuses -fopenmp). Linked with OpenMP, the library needs libgomp.so.1, which in a process
that has loaded torch's CPU wheel is torch's own runtime: one pool of threads for both."""
FLAG_SETS = (BASE_FLAGS + OPENMP_FLAGS + TUNED_FLAGS, BASE_FLAGS + OPENMP_FLAGS, BASE_FLAGS + TUNED_FLAGS, BASE_FLAGS)
COMPILE_TIMEOUT_S = 120


class BuildError(RuntimeError):
    """The library could not be built or loaded (the reason, in one line)."""


def compiler() -> str | None:
    """The C compiler to use: ``$CC`` (its first word), else the first of cc, gcc, clang on the PATH."""
    given = os.environ.get("CC", "").split()
    for name in ([given[0]] if given else []) + ["cc", "gcc", "clang"]:
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_identity() -> str:
    """What -march=native depends on: the CPU's model and feature flags (Linux), else the platform's words."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    keep = sorted({ln.strip() for ln in lines if ln.split(":")[0].strip() in ("model name", "flags", "Features",
                                                                              "CPU part", "CPU implementer")})
    return platform.machine() + "\n" + "\n".join(keep)


def _version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f"{cc} --version failed: {e}") from None
    return out.stdout + out.stderr


def cache_dir() -> Path:
    if os.environ.get("SAST_NATIVE_CACHE"):
        return Path(os.environ["SAST_NATIVE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sast-toolkit" / "native"


def _compile(cc: str, flags: tuple[str, ...], out: Path) -> str | None:
    """Compile to ``out``; None on success, else the compiler's last line of complaint."""
    cmd = [cc, *flags, "-o", str(out), str(SOURCE)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{' '.join(cmd)}: {e}"
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr or res.stdout).splitlines() if ln.strip()]
        return f"{' '.join(cmd)}: exit {res.returncode}: {lines[-1] if lines else 'no message'}"
    return None


def _writable_dir(preferred: Path) -> tuple[Path, bool]:
    """``preferred`` if a file can be made there, else a new temporary directory (True: remove it once loaded)."""
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=preferred, prefix=".probe-", delete=True)
        probe.close()
        return preferred, False
    except OSError:
        return Path(tempfile.mkdtemp(prefix="sast-native-")), True


STALE_S = 3600
"""A temporary file of a build older than this (its process was killed mid-build) is removed by the next build."""


def _remove_stale(where: Path) -> None:
    now = time.time()
    for tmp in where.glob(".kernels-*.so"):
        try:
            if now - tmp.stat().st_mtime > STALE_S:
                tmp.unlink()
        except OSError:
            pass


def _build_into(cc: str, flags: tuple[str, ...], where: Path, path: Path) -> str | None:
    """Compile to a temporary name in ``where``, then rename it to ``path``; None on success, else why not."""
    _remove_stale(where)
    fd, tmp = tempfile.mkstemp(dir=where, prefix=f".{path.stem}-", suffix=".so")
    os.close(fd)
    try:
        err = _compile(cc, flags, Path(tmp))
        if err is None:
            os.replace(tmp, path)
        return err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build() -> tuple[ctypes.CDLL, Path]:
    """The loaded library and its path, building it first where the cache has none; BuildError if impossible.

    A cached library that does not load (a damaged file) is removed and built again once."""
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler found (set CC, or install cc, gcc or clang)")
    source = b"".join(p.read_bytes() for p in (SOURCE, *HEADERS))
    version = _version(cc)
    cpu = _cpu_identity()
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256(b"\0".join(x.encode() if isinstance(x, str) else x for x in
                                        (source, cc, version, " ".join(flags), cpu))).hexdigest()[:20]
        where, temporary = _writable_dir(cache_dir())
        path = where / f"kernels-{key}.so"
        try:
            for attempt in range(2):
                if not path.exists():
                    err = _build_into(cc, flags, where, path)
                    if err is not None:
                        errors.append(err)
                        break
                try:
                    return ctypes.CDLL(str(path)), path
                except OSError as e:
                    errors.append(f"loading {path}: {e}")
                    if attempt == 0:
                        path.unlink(missing_ok=True)
        finally:
            if temporary:  # a loaded library stays mapped after its file is gone
                shutil.rmtree(where, ignore_errors=True)
    raise BuildError(errors[-1])

"""Run a command line (``python -m MODULE ARGS``) as a process of its own, quickly, optionally with a planted fault.

Every adversarial case runs a real command line in a process of its own and reads its exit
code, stdout and stderr (file descriptors 1 and 2, so writes from C code count too).
Starting Python and importing torch costs about 2.5 s a process on a busy 2-core machine,
so a server process imports the heavy third-party libraries once (none of the toolkit's own
modules) and forks a child for each command. The child runs the module as ``python -m``
does (runpy, run_name "__main__", sys.argv set) and exits with its code; an uncaught
exception prints its traceback and exits 1, as the interpreter does. ``real=True`` runs the
same child code in a fresh ``python -c`` instead (no fork), which the tests use to show that
the two agree.

A fault can be planted before the command runs: an atomic write
(``runfolder.atomic_write_bytes``, which every JSON, report and checkpoint writer goes
through) of a file named in ``names``, or of any file under the folder ``under``, fails
after ``after`` such writes have succeeded, with ``OSError(errno)`` raised by the write
itself and naming no file, as ``write()`` on a full disk raises it.
"""

from __future__ import annotations

import errno as errno_module
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

CHILD = r'''
import json, os, runpy, sys, traceback


def plant(fault):
    import runfolder
    import sast.checkpoint

    real = runfolder.atomic_write_bytes
    seen = [0]

    def faulty(path, write):
        p = os.path.abspath(os.fspath(path))
        under = fault.get("under")
        if os.path.basename(p) in fault.get("names", []) or (under and p.startswith(under + os.sep)):
            seen[0] += 1
            if seen[0] > fault.get("after", 0):
                def failing(f):
                    raise OSError(fault["errno"], os.strerror(fault["errno"]))
                return real(path, failing)
        return real(path, write)

    runfolder.atomic_write_bytes = faulty
    sast.checkpoint.atomic_write_bytes = faulty  # bound at its import


def run(req):
    os.chdir(req["cwd"])
    if req.get("fault"):
        plant(req["fault"])
    sys.argv = [req["module"], *req["args"]]
    try:
        runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code
'''

SERVER = CHILD + r'''
import importlib
for name in ("torch", "numpy", "scipy.stats", "scipy.sparse.linalg", "sympy", "sklearn.datasets", "jinja2",
             "matplotlib.pyplot", "tqdm"):
    importlib.import_module(name)  # the slow imports, once; no module of the toolkit
print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            sys.stdin = open(os.devnull)
            code = run(req)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
'''

REAL = CHILD + "\nsys.exit(run(json.loads(sys.argv[1])))\n"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        """The non-empty lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def fault(errno: int, *, names: tuple[str, ...] = (), under: str | os.PathLike[str] | None = None,
          after: int = 0) -> dict[str, Any]:
    """A planted write fault (see the module docstring)."""
    return {"errno": errno, "names": list(names), "under": os.path.abspath(under) if under else None,
            "after": after}


ENOSPC = errno_module.ENOSPC
EROFS = errno_module.EROFS


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) and the sha256 of its bytes: what "nothing lost" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Runner:
    """Runs command lines through one fork server (started on first use); see the module docstring."""

    def __init__(self, env: dict[str, str], scratch: Path) -> None:
        self.env, self.scratch, self._server, self._n = env, scratch, None, 0

    def __call__(self, module: str, *args: Any, fault: dict[str, Any] | None = None, real: bool = False,
                 timeout: float = 180) -> Result:
        req = {"module": module, "args": [str(a) for a in args], "cwd": str(REPO), "fault": fault}
        if real:
            proc = subprocess.run([sys.executable, "-c", REAL, json.dumps(req)], env=self.env, cwd=REPO,
                                  capture_output=True, text=True, timeout=timeout)
            return Result(proc.returncode, proc.stdout, proc.stderr)
        self._n += 1
        out, err = self.scratch / f"{self._n}.out", self.scratch / f"{self._n}.err"
        server = self._start()
        server.stdin.write(json.dumps({**req, "stdout": str(out), "stderr": str(err)}) + "\n")
        server.stdin.flush()
        reply = server.stdout.readline()
        if not reply:
            raise RuntimeError(f"the fork server died (exit {server.wait()})")
        return Result(json.loads(reply)["code"], out.read_text(errors="replace"), err.read_text(errors="replace"))

    def _start(self) -> subprocess.Popen:
        if self._server is None:
            self._server = subprocess.Popen([sys.executable, "-c", SERVER], env=self.env, cwd=REPO, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self._server.stdout.readline().strip() == "ready"
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stdin.close()
            self._server.wait(timeout=30)
            self._server = None

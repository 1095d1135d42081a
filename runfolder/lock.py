"""One writer per run folder: an advisory lock on ``runfolder.LOCK_FILE``, held while a trainer runs.

    with RunLock(run_dir):            # FolderBusy (a ValueError, one line) if another trainer holds it
        ...train into run_dir...

The lock is ``fcntl.flock`` on the lock file (the lock pip, tox and filelock use on
POSIX): the kernel releases it when its process ends, however it ends, so a trainer
killed with SIGKILL never leaves the folder locked. The file holds the holder's pid,
host and start time as JSON, for the message a second trainer gets and for the note
when a stale file is taken over: the pid recorded there is checked (alive or not) and
the note says which. The holder removes the file when it releases the lock; a trainer
that opened the file just before that checks, once it holds the lock, that the path
still names the file it locked, and tries again otherwise (so two trainers never both
hold a lock, one of them on a removed file).

Where ``fcntl`` is missing (Windows) or the file system refuses ``flock`` (some network
mounts), the trainer runs unlocked with a note on stderr. Standard library only.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from runfolder import LOCK_FILE

try:
    import fcntl
except ImportError:  # Windows: no advisory locks of this kind
    fcntl = None  # type: ignore[assignment]

_ATTEMPTS = 5  # a lock file removed between our open and our flock: try again (a race of microseconds)


class FolderBusy(ValueError):
    """Another live process holds the folder's lock; the message is one line naming its pid."""


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (signal 0; another user's process counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    """The JSON the lock file holds ({} if empty or unreadable: a holder killed mid-write)."""
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    pid, host, started = info.get("pid"), info.get("host"), info.get("started")
    text = f"pid {pid}" if pid is not None else "an unknown process"
    if host and host != socket.gethostname():
        text += f" on {host}"
    if started:
        text += f", started {started}"
    return text


class RunLock:
    """The advisory lock of one run folder (module docstring); a context manager, or ``acquire``/``release``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`FolderBusy` naming the holder's pid. Notes go to stderr."""
        if fcntl is None:
            print(f"note: {self.folder}: no file locks on this platform; make sure no other trainer writes "
                  "this folder", file=sys.stderr)
            return
        for _ in range(_ATTEMPTS):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # the umask's mode
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise FolderBusy(
                    f"{self.folder} is in use by another trainer ({_describe(holder)}, lock {self.path}); wait for "
                    "it to finish or stop it, or choose another --run-dir"
                ) from None
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    print(f"note: {self.folder}: the file system does not support locks ({e.strerror}); make sure "
                          "no other trainer writes this folder", file=sys.stderr)
                    return
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed it between our open and our flock: lock the new one
                os.close(fd)
                continue
            self._take_over(fd)
            return
        raise FolderBusy(f"{self.folder}: could not take the lock {self.path} (it keeps being replaced); "
                         "is another trainer starting on this folder?")

    def _take_over(self, fd: int) -> None:
        previous = _read_holder(fd)
        if previous:
            pid, host = previous.get("pid"), previous.get("host")
            if host not in (None, socket.gethostname()):
                state = f"recorded on host {host}, where this process cannot see whether it runs"
            elif isinstance(pid, int) and pid_alive(pid):
                state = "running, but not holding the lock: its pid now belongs to another process"
            else:
                state = "no longer running"
            print(f"note: {self.path}: took over a stale lock of {_describe(previous)} ({state})", file=sys.stderr)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": list(sys.argv)}
        data = (json.dumps(info) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and release the lock (a no-op if not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: see the module docstring
        except OSError:
            pass
        finally:
            os.close(fd)  # releases the flock

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["FolderBusy", "RunLock", "pid_alive"]

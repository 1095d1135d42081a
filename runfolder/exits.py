"""The exit codes of every command line and the one error boundary that produces them.

A pipeline acts on the exit code, so each code has one meaning (DESIGN.md, "Commands"):

- :data:`EXIT_OK` (0): done; every bound holds (or an assumption fails, or none applies);
- :data:`EXIT_VIOLATED` (1): a bound is violated (checks only);
- :data:`EXIT_BAD_INPUT` (2): bad input or an unusable file system: a missing,
  unreadable, corrupt or non-finite file, a bad setting, a folder that cannot be written
  (permissions, a full disk, a file in the way, a symbolic-link loop), memory exhausted;
  one line on stderr naming the file or setting;
- :data:`EXIT_DIVERGED` (3): training diverged (the last good checkpoint is kept);
- :data:`EXIT_INTERNAL` (70, ``EX_SOFTWARE`` of sysexits.h): an unexpected error, a bug
  of the toolkit; the traceback and one line saying so;
- :data:`EXIT_INTERRUPTED` (130): interrupted (Ctrl-C), one line.

A crash is never 1: only a check's verdict is. :func:`guard` wraps a command's
``main(argv=None) -> int`` so that nothing escapes it but an exit code; commands that
must clean up before exiting (``sast.train`` under torchrun) catch :data:`INPUT_ERRORS`
themselves and print :func:`describe` of them. Standard library only.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

EXIT_OK = 0
EXIT_VIOLATED = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): distinct from every verdict
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C

EXIT_CODES_EPILOG = (
    "Exit codes: 0 done (no bound violated), 1 a bound is violated, 2 bad input or an unusable file "
    "(one line on stderr naming the file or setting), 3 training diverged (the last good checkpoint is kept), "
    "70 internal error (a bug: traceback on stderr), 130 interrupted."
)
"""The ``--help`` epilog of every command line (a command that never checks a bound never exits 1)."""

INPUT_ERRORS: tuple[type[BaseException], ...] = (OSError, MemoryError, ValueError)
"""What a command line reports as bad input, one line, exit 2: file-system errors (OSError:
permissions, no space, is-a-directory, not-a-directory, symbolic-link loops, ...), memory
exhausted, and ValueError with its subclasses (the project's input errors, such as
``sast.checkpoint.CheckpointError`` and ``checks.CheckInputError``, and json's and
UTF-8's decoding errors)."""

_OOM_NAMES = ("OutOfMemoryError",)  # torch.cuda.OutOfMemoryError (a RuntimeError), matched by name: no torch here

_HINTS = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "free some space or choose another folder",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another folder",
    errno.ENOTDIR: "a file stands where a folder is expected; choose another path",
    errno.EISDIR: "a folder stands where a file is expected; name a file",
    errno.EEXIST: "a file stands where a folder is expected; choose another path",
    errno.ELOOP: "a symbolic link loop; point the link at a real file or folder",
    errno.ENAMETOOLONG: "shorten the path",
    errno.ENOENT: "check the path",
}

_Main = TypeVar("_Main", bound=Callable[..., int])


def one_line(text: str) -> str:
    """``text`` on one line: its lines stripped and joined by a space."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe(exc: BaseException) -> str:
    """One line for a user: what went wrong, naming the file (an OSError's ``filename``) and how to fix it."""
    if isinstance(exc, OSError) and exc.filename is not None:
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        what = exc.strerror or type(exc).__name__
        hint = _HINTS.get(exc.errno or 0)
        return one_line(f"{where}: {what}" + (f"; {hint}" if hint else ""))
    if isinstance(exc, MemoryError) or type(exc).__name__ in _OOM_NAMES:
        return one_line(f"out of memory ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}); "
                        "use less data (--limit, --batch) or a machine with more memory")
    text = one_line(str(exc))
    return text or type(exc).__name__


def is_input_error(exc: BaseException) -> bool:
    """True for what :func:`guard` reports as bad input (exit 2): :data:`INPUT_ERRORS`, and running out of GPU memory."""
    return isinstance(exc, INPUT_ERRORS) or type(exc).__name__ in _OOM_NAMES


def report_internal(exc: BaseException) -> int:
    """Print ``exc``'s traceback and one line calling it an internal error; return :data:`EXIT_INTERNAL`."""
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"internal error (a bug in the toolkit, not bad input; exit {EXIT_INTERNAL}): "
          f"{type(exc).__name__}: {one_line(str(exc))[:300]}", file=sys.stderr)
    return EXIT_INTERNAL


def guard(main: _Main) -> _Main:
    """Wrap a command's ``main(argv=None) -> int`` in the shared error boundary.

    Bad input (:func:`is_input_error`) prints ``error: <one line>`` and returns
    :data:`EXIT_BAD_INPUT`; Ctrl-C prints one line and returns :data:`EXIT_INTERRUPTED`;
    any other exception prints its traceback and one line, and returns
    :data:`EXIT_INTERNAL`. ``SystemExit`` (argparse's usage errors and ``--help``) passes
    through. The signature is kept, so tests call ``main([...])`` and read the code.
    """

    @functools.wraps(main)
    def guarded(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 (the boundary: every exception becomes an exit code)
            if is_input_error(exc):
                print(f"error: {describe(exc)}", file=sys.stderr)
                return EXIT_BAD_INPUT
            return report_internal(exc)

    return guarded  # type: ignore[return-value]


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Raise the OSError that writing the file ``path`` would raise, before any work is done; return it as a Path.

    ``path`` must not be a folder, its nearest existing ancestor folder must be a folder
    (not a file) that this process may write. A command calls this on its output paths
    before a long computation, so that a bad ``--json``/``--out``/``-o`` costs nothing.
    (Permission bits do not stop root; a read-only file system or a full disk still
    fails at the write, which the boundary reports.)
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    folder = path.parent
    while not (folder.exists() or folder.is_symlink()) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        code = errno.ELOOP if folder.is_symlink() and not folder.exists() else errno.ENOTDIR
        raise OSError(code, os.strerror(code), str(folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    return path


__all__ = [
    "EXIT_BAD_INPUT", "EXIT_CODES_EPILOG", "EXIT_DIVERGED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK",
    "EXIT_VIOLATED", "INPUT_ERRORS", "check_writable", "describe", "guard", "is_input_error", "one_line",
    "report_internal",
]

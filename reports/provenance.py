"""Where a run came from, as the report shows it: the command that reproduces it, its configuration, its machine.

Everything here reads config.json's sections (``train``, ``model``,
``environment`` and the rest) through :class:`reports.runs.Run` and returns
plain text or (key, text) pairs; the template lays them out.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from reports import _format as fmt
from reports.runs import SOURCE_KEY, SOURCE_NIR, Run

_PACKAGES = ("sast", "checks", "reports", "theory")
"""The toolkit's top-level packages: a recorded script path inside one becomes ``python -m``."""

_ENVIRONMENT_ORDER = ("python", "torch", "numpy", "platform", "torch_threads", "cuda", "git_commit")
_KEY_TRAIN_FIELDS = ("data", "method", "rho", "sam_batch", "optimizer", "lr", "batch_size", "epochs", "seed")
_SUMMARY_FIELDS = ("method", "data", "rho", "optimizer", "epochs", "seed")
_SOURCE_ORDER = ("library", "path", "sha256", "bytes", "kind", "dt", "reset", "beta", "beta_from", "T", "T_from",
                 "data")
"""The model source's fields in the order the report lists them (``sast.model_file`` writes them)."""
_OWN_SECTIONS = ("train", "model", "environment", "device", SOURCE_KEY, "data")
"""config.json keys shown elsewhere; the rest go to the "other" section."""


def command_line(argv: Sequence[str]) -> str:
    """A recorded ``sys.argv`` as a shell command.

    ``python -m sast.train`` records the module's file as argv[0]
    ('/repo/sast/train.py'); that is shown as the ``-m`` form, which works from
    the repository root wherever the run was made.
    """
    first = argv[0]
    if first in ("-m", "-c"):
        return "python " + shlex.join(argv)
    if first.endswith(".py"):
        parts = PurePosixPath(first).parts
        for i in range(len(parts) - 2, -1, -1):
            if parts[i] in _PACKAGES:
                module = ".".join(parts[i:])[: -len(".py")].removesuffix(".__main__")
                return "python " + shlex.join(["-m", module, *argv[1:]])
        return "python " + shlex.join(argv)
    return shlex.join(argv)


def reproduce_command(run: Run) -> str:
    """The shell commands that reproduce the run: the git checkout, then the recorded command."""
    env = run.environment
    argv = env.get("argv")
    lines = []
    commit = env.get("git_commit")
    if isinstance(commit, str) and commit:
        lines.append(f"git checkout {shlex.quote(commit)}")
    command = run.config.get("command") if isinstance(run.config, dict) else None
    if isinstance(command, str) and command:  # the trainer's own reproducible command line
        lines.append(command)
    elif isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        lines.append(command_line(argv))
    else:
        lines.append("# the command was not recorded (config.json has no environment.argv)")
    return "\n".join(lines)


def config_pairs(section: dict[str, Any], order: Sequence[str] = ()) -> list[tuple[str, str]]:
    """A config section as (key, text) pairs: the keys in ``order`` first, then the rest as written."""
    keys = [k for k in order if k in section] + [k for k in section if k not in order]
    return [(str(k), fmt.plain(section[k])) for k in keys]


def environment_pairs(run: Run) -> list[tuple[str, str]]:
    """The recorded environment (versions, platform, threads, commit), a missing value read as 'none'."""
    return [(k, "none" if v == "null" else v) for k, v in config_pairs(run.environment, _ENVIRONMENT_ORDER)]


def key_config(run: Run) -> list[tuple[str, str]]:
    """The training settings a reader compares first (data, method, rho, base step, ...), those recorded; for a
    NIR file's run folder, which has no training settings, its data settings."""
    train = run.train_config
    if not train:
        return config_pairs(run.data_settings)
    return config_pairs({k: train[k] for k in _KEY_TRAIN_FIELDS if k in train}, _KEY_TRAIN_FIELDS)


def source_pairs(run: Run) -> list[tuple[str, str]]:
    """Where the model came from (library or "sast-toolkit checkpoint", path, sha256, a NIR file's settings)."""
    source = run.source()
    if not source:
        return []
    pairs = config_pairs({k: v for k, v in source.items() if k != "recorded"}, _SOURCE_ORDER)
    if not source.get("recorded"):
        pairs.append(("recorded", "no: the run folder's ckpt.pt, hashed when this report was built"))
    return pairs


def source_line(run: Run) -> str:
    """One line naming the model's source: library, file, the start of its sha256."""
    source = run.source()
    if not source:
        return "model source not recorded"
    digest = source.get("sha256")
    sha = f", sha256 {digest[:16]}…" if isinstance(digest, str) and digest else ""
    return f"{fmt.plain(source.get('library', 'unknown library'))}: {fmt.plain(source.get('path', '?'))}{sha}"


def config_sections(run: Run) -> list[tuple[str, list[tuple[str, str]]]]:
    """The whole configuration as named sections: "train", "model", "data" (a NIR file's), then "other"."""
    sections = [(name, config_pairs(sec)) for name, sec in (("train", run.train_config), ("model", run.model_config),
                                                            ("data", run.data_settings)) if sec]
    other = {k: v for k, v in run.config.items() if k not in _OWN_SECTIONS}
    if other:
        sections.append(("other", config_pairs(other)))
    return sections


def run_summary(run: Run) -> str:
    """One line: method, data, rho, base step, epochs, seed, device."""
    t = run.train_config or run.data_settings
    parts = [f"{k} {fmt.plain(t[k])}" for k in _SUMMARY_FIELDS if k in t]
    if run.source_kind == SOURCE_NIR:
        parts.insert(0, "a NIR file's network")
    if run.device:
        parts.append(f"device {run.device}")
    return ", ".join(parts) if parts else "configuration not recorded"

"""Process settings read from the environment (``SAST_MALLOC``, ``SAST_NATIVE``): one parser, one refusal."""

from __future__ import annotations

import os


def env_choice(name: str, choices: tuple[str, ...]) -> str:
    """The value of the environment variable ``name`` (case and spaces aside), one of ``choices``; unset or empty:
    the first. ValueError (a command's bad input: one line, exit 2) for any other value."""
    value = os.environ.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise ValueError(f"{name}={os.environ[name]!r}: expected one of {', '.join(choices)} (or unset: {choices[0]})")
    return value

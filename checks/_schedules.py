"""When a live-monitor quantity runs: schedules, plain functions from a count (step or epoch) to bool.

Part of :mod:`checks.monitor` (which re-exports every name): ``every``, ``log_spaced``, ``at``,
``log_then_every``, ``staggered``, ``at_epoch_end``, ``at_train_end``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Schedule = Callable[[int], bool]


@dataclass(frozen=True)
class every:
    """True at n, 2n, 3n, ... (and at ``start``; with on="step", at step 0 = w_0)."""

    n: int
    start: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"every(n): n must be >= 1, got {self.n}")

    def __call__(self, k: int) -> bool:
        return k >= self.start and (k - self.start) % self.n == 0


@dataclass(frozen=True)
class log_spaced:
    """True at start, start*base, start*base^2, ... (1, 2, 4, 8, ... by default)."""

    base: int = 2
    start: int = 1

    def __post_init__(self) -> None:
        if self.base < 2 or self.start < 1:
            raise ValueError(f"log_spaced: need base >= 2 and start >= 1, got base={self.base}, start={self.start}")

    def __call__(self, k: int) -> bool:
        if k < self.start or k % self.start:
            return False
        q = k // self.start
        while q % self.base == 0:
            q //= self.base
        return q == 1


@dataclass(frozen=True)
class at:
    """True exactly at the given counts."""

    points: tuple[int, ...]

    def __init__(self, *points: int) -> None:
        object.__setattr__(self, "points", tuple(sorted(int(p) for p in points)))

    def __call__(self, k: int) -> bool:
        return k in self.points


@dataclass(frozen=True)
class log_then_every:
    """Log-spaced early, sparse later: 0, then 1, base, base^2, ... below ``early`` (default n), then n, 2n, ...

    Curvature and state ranges move fastest in the first steps; later a fixed spacing keeps
    the cost a fixed fraction of training. :meth:`index` numbers the points (0, 1, 2, ...),
    which :class:`staggered` uses to spread quantities over them.
    """

    n: int
    base: int = 2
    early: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1 or self.base < 2:
            raise ValueError(f"log_then_every: need n >= 1 and base >= 2, got n={self.n}, base={self.base}")
        if self.early is not None and not 1 <= self.early <= self.n:
            raise ValueError(f"log_then_every: need 1 <= early <= n, got early={self.early}, n={self.n}")

    @property
    def _limit(self) -> int:
        return self.n if self.early is None else self.early

    @property
    def _early(self) -> int:
        """How many powers base^j (j >= 0) lie below the early limit."""
        count, p = 0, 1
        while p < self._limit:
            count, p = count + 1, p * self.base
        return count

    def index(self, k: int) -> int | None:
        """The position of k among the points (0 for k = 0), or None where k is not a point."""
        if k == 0:
            return 0
        if 0 < k < self._limit:
            j, q = 0, k
            while q % self.base == 0:
                q, j = q // self.base, j + 1
            return 1 + j if q == 1 else None
        if k >= self.n and k % self.n == 0:
            return self._early + k // self.n
        return None

    def __call__(self, k: int) -> bool:
        return self.index(k) is not None


@dataclass(frozen=True)
class staggered:
    """Every ``of``-th point of ``points`` (a schedule with ``index``), starting at its ``slot``-th.

    ``of`` quantities given slots 0 .. of-1 of one point set never run at the same step:
    at most one expensive check per point, in rotation.
    """

    points: log_then_every
    slot: int
    of: int

    def __post_init__(self) -> None:
        if not 0 <= self.slot < self.of:
            raise ValueError(f"staggered: need 0 <= slot < of, got slot={self.slot}, of={self.of}")

    def __call__(self, k: int) -> bool:
        i = self.points.index(k)
        return i is not None and i % self.of == self.slot


@dataclass(frozen=True)
class _Always:
    name: str

    def __call__(self, k: int) -> bool:
        return True

    def __repr__(self) -> str:
        return self.name


at_epoch_end: Schedule = _Always("at_epoch_end")
"""With ``on="epoch"``: the end of every epoch."""
at_train_end: Schedule = _Always("at_train_end")
"""With ``on="end"`` (which consults no schedule): once, when training ends."""



"""What a sweep trains: the axes of a grid, their product, and one RunSpec per training run.

A grid is a product of TrainConfig settings (``--set beta=0.5,1,2 --set lr=0.1,0.5``) with
rho as the special axis: at every setting of the other axes, every seed trains HFSB, SF
(rho = 0), SAST at each rho > 0, and the compute-matched control (SF with twice the
epochs: a SAST step costs two gradient evaluations), so that every comparison is paired
on the same seed and setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Sequence

from sast.train import TrainConfig

METHOD_ORDER = {"hfsb": 0, "sf": 1, "sf-matched": 2, "sast": 3}
COST = {"hfsb": 1.0, "sf": 1.0, "sf-matched": 2.0, "sast": 2.0}
"""Training cost of a run in SF-epochs per epoch (for the progress line's estimate of the time left)."""

# fields a grid sets by itself or through its own flags, never as an axis
_CONTROLLED = {"method": "the grid trains every method", "seed": "use --seeds", "epochs": "use --epochs",
               "data": "use --dataset", "device": "use --device", "root": "use --root",
               "cache_dir": "use --cache-dir", "limit": "use --limit"}
LAYER_SEPARATOR = "+"
"""Between the layers of one ``layers`` value: ``--set layers=dense:256,dense:256+dense:128``."""


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep: its method, rho, seed and the setting of the other axes."""

    method: str  # hfsb | sf | sast | sf-matched
    rho: float
    seed: int
    setting: tuple[tuple[str, Any], ...] = ()

    @property
    def setting_tag(self) -> str:
        """The setting as a folder name, ``beta=0.5,lr=0.1`` ("" without axes)."""
        return setting_tag(self.setting)

    @property
    def name(self) -> str:
        tag = {"sast": f"sast-rho{self.rho:g}"}.get(self.method, self.method)
        return f"{tag}-s{self.seed}"

    @property
    def path(self) -> str:
        """The run folder, relative to the sweep's folder."""
        return f"{self.setting_tag}/{self.name}" if self.setting else self.name

    @property
    def cost(self) -> float:
        return COST[self.method]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return LAYER_SEPARATOR.join(map(str, value))
    return str(value)


def setting_tag(setting: Sequence[tuple[str, Any]]) -> str:
    return ",".join(f"{k}={format_value(v)}" for k, v in setting)


def _field_parser(name: str):
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"--set: unknown setting {name!r}{hint}; any TrainConfig field: {', '.join(fields)}")
    if name in _CONTROLLED:
        raise ValueError(f"--set {name}=...: {name} is not an axis ({_CONTROLLED[name]})")
    default = TrainConfig().__dict__[name]
    if name == "layers":
        # a tuple: a RunSpec (frozen, hashable) holds it; train_config hands TrainConfig a list
        return lambda text: tuple(s.strip() for s in text.split(LAYER_SEPARATOR) if s.strip())
    if isinstance(default, bool):
        return lambda text: {"true": True, "false": False}[text.lower()]
    if isinstance(default, float) or name == "rho":
        return float
    if isinstance(default, int):
        return int
    return str


def parse_axes(sets: Sequence[str]) -> dict[str, list[Any]]:
    """``["beta=0.5,1", "rho=0,0.3"]`` -> {"beta": [0.5, 1.0], "rho": [0.0, 0.3]}, typed as TrainConfig's fields.

    Raises ValueError (one line) for a malformed item, an unknown or controlled field, a
    value of the wrong type, a repeated axis or value, or a negative or non-finite rho.
    """
    axes: dict[str, list[Any]] = {}
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not text.strip():
            raise ValueError(f"--set takes NAME=V1,V2,..., got {item!r}")
        if key in axes:
            raise ValueError(f"--set {key} given twice; put all its values in one --set")
        parse = _field_parser(key)
        values = []
        for raw in (v.strip() for v in text.split(",")):
            try:
                values.append(parse(raw))
            except (ValueError, KeyError):
                raise ValueError(f"--set {key}: {raw!r} is not a valid value for {key}") from None
        if len({format_value(v) for v in values}) != len(values):
            raise ValueError(f"--set {key}: a value is repeated in {text!r}")
        if key == "rho" and any(not (math.isfinite(r) and r >= 0) for r in values):
            raise ValueError(f"--set rho takes finite numbers >= 0, got {text!r}")
        axes[key] = values
    return axes


def settings_product(axes: dict[str, list[Any]]) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the non-rho axes, in the order given (one empty setting without axes)."""
    settings: list[tuple[tuple[str, Any], ...]] = [()]
    for key, values in axes.items():
        if key == "rho":
            continue
        settings = [s + ((key, v),) for s in settings for v in values]
    return settings


def plan_runs(rhos: Sequence[float], seeds: int,
              settings: Sequence[tuple[tuple[str, Any], ...]] = ((),)) -> list[RunSpec]:
    """HFSB, SF, SAST at each rho > 0, and the compute-matched SF, for every setting and seed."""
    runs = []
    for setting in settings:
        for seed in range(seeds):
            runs += [RunSpec("hfsb", 0.0, seed, setting), RunSpec("sf", 0.0, seed, setting)]
            runs += [RunSpec("sast", float(r), seed, setting) for r in rhos if r > 0]
            if any(r > 0 for r in rhos):
                runs.append(RunSpec("sf-matched", 0.0, seed, setting))
    return runs


def train_config(spec: RunSpec, base: dict[str, Any], epochs: int) -> TrainConfig:
    """The TrainConfig of one run: ``base``, then the run's setting, method, rho, seed and epochs."""
    method = "sf" if spec.method == "sf-matched" else spec.method
    e = 2 * epochs if spec.method == "sf-matched" else epochs  # same gradient evaluations as SAST
    setting = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.setting}
    return TrainConfig(**{**base, **setting, "method": method, "rho": spec.rho, "seed": spec.seed, "epochs": e})

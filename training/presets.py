"""Training presets ``fast | balanced | quality``: every knob a run depends on, in one frozen record.

A preset is recorded whole in ``bundle.json`` so a bundle says exactly how it was trained; with the
same data and preset (seed included) a run reproduces its numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tradeloop.bars.schema import ASSET_CLASSES
from tradeloop.errors import InvalidInput
from tradeloop.features import spec
from training.backtest import DEFAULT_COSTS_BPS

__all__ = ["PRESETS", "Preset", "get_preset", "parse_costs"]


@dataclass(frozen=True, slots=True)
class Preset:
    """Model sizes, schedule and evaluation layout of one training run."""

    name: str
    window: int = spec.WINDOW  # W bars per CNN input window
    horizon: int = 1  # h: label is the forward log return over h bars
    # CNN
    cnn_width: int = 16
    cnn_epochs: int = 8
    cnn_patience: int = 2  # epochs without a better validation loss before stopping
    cnn_batch: int = 512
    cnn_lr: float = 2e-3
    cnn_max_train_rows: int = 60_000  # most recent CNN rows used per group (bounds epoch time)
    # XGBoost
    xgb_rounds: int = 80
    xgb_depth: int = 3
    xgb_eta: float = 0.05
    xgb_report_every: int = 20  # boosting rounds per ray.train.report (V2 paces every report)
    # time layout: CNN fits on the first ``cnn_fraction`` of time; the rest is XGBoost's, split
    # into ``folds + 1`` chunks: the first trains, each later one is a walk-forward test window.
    cnn_fraction: float = 0.4
    cnn_val_fraction: float = 0.15  # last share of the CNN period held out for early stopping
    folds: int = 3
    # backtest: cost per unit of position change, in basis points, per asset class
    costs_bps: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_COSTS_BPS))
    seed: int = 7

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    "fast": Preset(name="fast", window=32, cnn_width=8, cnn_epochs=4, cnn_patience=1, xgb_rounds=60),
    "balanced": Preset(name="balanced"),
    "quality": Preset(
        name="quality",
        cnn_width=32,
        cnn_epochs=30,
        cnn_patience=4,
        cnn_lr=1e-3,
        cnn_max_train_rows=400_000,
        xgb_rounds=400,
        xgb_depth=4,
        xgb_eta=0.03,
        xgb_report_every=50,
        folds=5,
    ),
}


def get_preset(name: str, **overrides: Any) -> Preset:
    """The preset called ``name`` with ``overrides`` applied; unknown names are the caller's error."""
    if name not in PRESETS:
        raise InvalidInput("preset", f"{name!r} is not one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    unknown = set(overrides) - set(preset.to_dict())
    if unknown:
        raise InvalidInput("preset", f"unknown setting(s) {', '.join(sorted(unknown))}")
    if "costs_bps" in overrides:
        overrides["costs_bps"] = parse_costs(overrides["costs_bps"], preset.costs_bps)
    return replace(preset, **overrides) if overrides else preset


def parse_costs(given: dict[str, float] | list[str], base: dict[str, float]) -> dict[str, float]:
    """``base`` with costs overridden per asset class, from a dict or ``CLASS=BPS`` strings."""
    pairs: dict[str, object] = dict(given) if isinstance(given, dict) else {}
    for item in given if not isinstance(given, dict) else []:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput("cost", f"{item!r} is not CLASS=BPS (for example crypto=10)")
        pairs[name.strip()] = value.strip()
    out = dict(base)
    for name, value in pairs.items():
        if name not in ASSET_CLASSES:
            raise InvalidInput("cost", f"{name!r} is not an asset class ({', '.join(ASSET_CLASSES)})")
        try:
            bps = float(value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidInput("cost", f"{name}={value!r} is not a number of basis points") from exc
        if not 0.0 <= bps < 1000.0:
            raise InvalidInput("cost", f"{name}={bps:g} bps is outside [0, 1000)")
        out[name] = bps
    return out

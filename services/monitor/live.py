"""Live performance: the prediction log joined with the returns that have since been realised.

Each logged answer names its series and ``as_of`` (the open time of the newest bar behind its
features). Once bar ``as_of`` + h has closed and been stored, the realised h-bar log return is
known; the answer is scored with the same rule as training (``tradeloop.metrics``: flat bars
excluded, a zero call scores 0.5). Repeated answers for one (series, bar, model) count once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tradeloop.bars.schema import parse_series_id
from tradeloop.bars.store import BarStore
from tradeloop.config import Settings
from tradeloop.labels import forward_return

__all__ = ["labelled_predictions", "read_prediction_log"]

COLUMNS = ["logged_at", "as_of", "series_id", "model_version", "prob_up", "expected_return", "signal"]


def read_prediction_log(root: Path, *, version: str | None = None) -> pd.DataFrame:
    """Every logged answer under ``root`` (``HOME/predictions``), optionally of one model version."""
    parts = sorted(root.glob("date=*/part-*.parquet")) if root.is_dir() else []
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.concat([pd.read_parquet(p, columns=COLUMNS) for p in parts], ignore_index=True)
    if version is not None:
        frame = frame[frame["model_version"] == version]
    return frame.sort_values("logged_at", kind="stable").reset_index(drop=True)


def labelled_predictions(settings: Settings, log: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Logged answers of named series whose h-bar return is now known: adds ``realised``."""
    named = log[log["series_id"].astype(bool) & log["as_of"].astype(bool)]
    named = named.drop_duplicates(["series_id", "as_of", "model_version"], keep="last")
    store, out = BarStore(settings), []
    for sid, rows in named.groupby("series_id", sort=True):
        symbol, timeframe = parse_series_id(str(sid))
        bars = store.read(symbol, timeframe)
        if bars.empty:
            continue
        ret = pd.Series(forward_return(bars["close"].to_numpy(), horizon), index=pd.DatetimeIndex(bars["ts"]))
        when = pd.DatetimeIndex(pd.to_datetime(rows["as_of"], utc=True, format="ISO8601"))
        realised = ret.reindex(when).to_numpy()
        known = np.isfinite(realised)
        out.append(rows.loc[known].assign(realised=realised[known], bar=when[known]))
    if not out:
        return pd.DataFrame(columns=[*COLUMNS, "realised", "bar"])
    return pd.concat(out, ignore_index=True).sort_values("bar", kind="stable").reset_index(drop=True)

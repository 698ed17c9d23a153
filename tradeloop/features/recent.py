"""Recent CNN windows per series: the small offline table behind the ``bar_window`` feature view.

Windows are never stored per bar for the whole history (DESIGN, Features); this table keeps only
the last :data:`KEEP` windows of each series, flattened row-major from (W, C) to W×C float32,
which is all that materializing the online store needs. Layout
``windows/timeframe=TF/symbol=SYM/windows.parquet``, rewritten atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tradeloop.bars.store import write_parquet_atomic
from tradeloop.config import Settings
from tradeloop.features import spec
from tradeloop.features.windows import sliding_windows

__all__ = ["KEEP", "offline_features", "sync_windows", "update_windows", "window_frame", "window_path"]

KEEP = 8  # windows kept per series: the newest is what the online store serves


def window_path(settings: Settings, symbol: str, timeframe: str) -> Path:
    return settings.windows_dir / f"timeframe={timeframe}" / f"symbol={symbol}" / "windows.parquet"


def window_frame(
    sid: str, ts: pd.Series, channels: np.ndarray, created: pd.Timestamp, keep: int = KEEP
) -> pd.DataFrame:
    """Rows (series_id, ts, created, window) for the last ``keep`` bars that have a full window."""
    if len(channels) < spec.WINDOW:
        return pd.DataFrame({"series_id": [], "ts": [], "created": [], "window": []})
    views = sliding_windows(np.asarray(channels, dtype=np.float32))[-keep:]
    stamps = pd.Series(ts).iloc[len(channels) - len(views) :].reset_index(drop=True)
    return pd.DataFrame(
        {
            "series_id": sid,
            "ts": stamps,
            "created": created,
            "window": [v.reshape(-1).copy() for v in views],
        }
    )


def offline_features(settings: Settings, symbol: str, timeframe: str) -> pd.DataFrame:
    """Every offline feature row of one series (built table plus ingested parts), one per ts.

    Where a bar appears in more than one file the latest ``created`` wins, as in Feast's
    point-in-time join.
    """
    folder = settings.features_dir / f"timeframe={timeframe}" / f"symbol={symbol}"
    parts = [pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))]
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True).sort_values(["ts", "created"], kind="stable")
    return frame.drop_duplicates("ts", keep="last").reset_index(drop=True)


def sync_windows(settings: Settings) -> list[str]:
    """Rewrite every series' recent-window table from its offline channel columns."""
    written = []
    for tf_dir in sorted(settings.features_dir.glob("timeframe=*")):
        for sym_dir in sorted(tf_dir.glob("symbol=*")):
            timeframe, symbol = tf_dir.name.split("=", 1)[1], sym_dir.name.split("=", 1)[1]
            table = offline_features(settings, symbol, timeframe)
            if table.empty:
                continue
            sid = str(table["series_id"].iloc[0])
            channels = table[list(spec.CHANNELS)].to_numpy()
            rows = window_frame(sid, table["ts"], channels, table["created"].max())
            if len(rows):
                write_parquet_atomic(rows, window_path(settings, symbol, timeframe))
                written.append(sid)
    return written


def update_windows(settings: Settings, symbol: str, timeframe: str, new: pd.DataFrame) -> None:
    """Add freshly computed window rows and keep the newest :data:`KEEP` (live ingest)."""
    if new.empty:
        return
    path = window_path(settings, symbol, timeframe)
    old = pd.read_parquet(path) if path.exists() else None
    frame = new if old is None else pd.concat([old, new], ignore_index=True)
    frame = frame.sort_values(["ts", "created"], kind="stable").drop_duplicates("ts", keep="last")
    write_parquet_atomic(frame.iloc[-KEEP:].reset_index(drop=True), path)

"""Feast definitions of tradeloop: entity ``series``, two feature views, their sources and services.

Feature names, the window length and the metadata columns come from :mod:`tradeloop.features.spec`,
so the store can never disagree with the code that computes the values. The offline sources sit
under ``TRADELOOP_HOME`` (read once, when ``feast apply`` imports this file), so apply again after
moving the home. ``bar_window`` has its own small source holding only recent windows (DESIGN,
Features): windows are never stored per bar offline.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Float32

from tradeloop.config import Settings
from tradeloop.features import spec

_HOME = Settings.load()

series = Entity(
    name="series",
    join_keys=["series_id"],
    value_type=ValueType.STRING,
    description="One bar series, SYMBOL:TIMEFRAME (e.g. BTCUSDT:1h).",
)

bar_features_source = FileSource(
    name="bar_features_source",
    path=str(_HOME.features_dir),
    timestamp_field="ts",
    created_timestamp_column="created",
    description="Offline per-bar features: features/timeframe=TF/symbol=SYM/*.parquet.",
)

bar_window_source = FileSource(
    name="bar_window_source",
    path=str(_HOME.data_dir / "windows"),
    timestamp_field="ts",
    created_timestamp_column="created",
    description="The most recent CNN windows per series, enough to materialize the online store.",
)

bar_push = PushSource(
    name="bar_push",
    batch_source=bar_features_source,
    description="Live bars' indicators and metadata, pushed by `tradeloop ingest`.",
)

window_push = PushSource(
    name="window_push",
    batch_source=bar_window_source,
    description="Live bars' CNN windows, pushed by `tradeloop ingest`.",
)

# ttl 0 = no expiry: staleness is judged by the reader from the event timestamp (feature age),
# because one ttl cannot suit every timeframe from 1m to 1w.
bar_features = FeatureView(
    name="bar_features",
    entities=[series],
    ttl=timedelta(0),
    schema=[Field(name=n, dtype=Float32) for n in (*spec.FEATURE_NAMES, *spec.METADATA)],
    source=bar_push,
    online=True,
    tags={"spec_version": spec.SPEC_VERSION},
    description="Stationary indicators and market metadata of the latest bar (XGBoost inputs).",
)

bar_window = FeatureView(
    name="bar_window",
    entities=[series],
    ttl=timedelta(0),
    schema=[Field(name="window", dtype=Array(Float32))],
    source=window_push,
    online=True,
    tags={
        "spec_version": spec.SPEC_VERSION,
        "window": str(spec.WINDOW),
        "channels": ",".join(spec.CHANNELS),
        "layout": "row-major (W, C) flattened",
    },
    description="The last W bars × C normalised channels, flattened (CNN input).",
)

tradeloop_model = FeatureService(
    name=f"tradeloop_v{spec.SPEC_VERSION}",
    features=[bar_features, bar_window],
    description="Everything one prediction reads; its name is recorded in each model bundle.",
)

"""The one adapter between tradeloop and Feast: configuration, apply, materialize, push and reads.

Everything else in tradeloop speaks plain pandas and ``series_id`` strings; only this module
imports ``feast``. The repository in ``feature_repo/`` stays a standard Feast repository: its
``feature_store.yaml`` reads two variables (``TRADELOOP_FEAST_REGISTRY``,
``TRADELOOP_FEAST_ONLINE_STORE``) that :func:`feast_environment` derives from the settings, so the
``feast`` CLI and this module always open the same stores:

- default: file registry and SQLite online store under ``HOME/feast``;
- ``TRADELOOP_REDIS_URL`` set (``redis://[:password@]host:port[/db]``): Redis online store;
- ``TRADELOOP_REGISTRY_URL`` set (``postgresql://…``): SQL registry in that database.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import string
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView
from feast.data_source import DataSource, PushMode
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores import redis as redis_store
from feast.infra.online_stores import sqlite as sqlite_store
from feast.infra.provider import get_provider
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.repo_operations import get_repo_files
from google.protobuf.timestamp_pb2 import Timestamp

from tradeloop import online_wire
from tradeloop.config import Settings
from tradeloop.errors import InvalidInput, UnknownSeries
from tradeloop.features import spec

__all__ = [
    "FEATURE_SERVICE",
    "REPO_DIR",
    "OnlineReader",
    "OnlineRow",
    "OnlineWriter",
    "apply",
    "feast_environment",
    "historical_features",
    "materialize",
    "open_store",
    "push_online",
    "read_online",
    "redis_connection_string",
]

# The Feast repository: TRADELOOP_FEATURE_REPO where it is installed apart from the source (the image
# ships it at /app/feature_repo), else the checkout's own feature_repo/.
REPO_DIR = Path(
    os.environ.get("TRADELOOP_FEATURE_REPO") or Path(__file__).resolve().parents[1] / "feature_repo"
).resolve()
FEATURE_SERVICE = f"tradeloop_v{spec.SPEC_VERSION}"
FEATURE_REFS: tuple[str, ...] = (
    *(f"bar_features:{n}" for n in (*spec.FEATURE_NAMES, *spec.METADATA)),
    "bar_window:window",
)
_REGISTRY_CACHE_TTL_S = 60
_EPOCH = datetime(1970, 1, 2, tzinfo=UTC)


def redis_connection_string(url: str) -> str:
    """Feast's ``host:port,db=N,password=…,ssl=true`` form of a ``redis://`` URL (or host:port)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise InvalidInput("TRADELOOP_REDIS_URL", f"{url!r} is not redis://host:port[/db]")
    options = [f"{parts.hostname}:{parts.port or 6379}"]
    db = parts.path.strip("/")
    if db:
        options.append(f"db={int(db)}")
    if parts.password:
        options.append(f"password={unquote(parts.password)}")
    if parts.scheme == "rediss":
        options.append("ssl=true")
    return ",".join(options)


def feast_environment(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables ``feature_store.yaml`` and ``definitions.py`` read, for this home and env."""
    env = os.environ if environ is None else environ
    feast_dir = settings.feast_dir
    registry_url = env.get("TRADELOOP_REGISTRY_URL")
    redis_url = env.get("TRADELOOP_REDIS_URL")
    registry: dict[str, Any] = (
        {"registry_type": "sql", "path": registry_url}
        if registry_url
        else {"registry_type": "file", "path": str(feast_dir / "registry.db")}
    )
    registry["cache_ttl_seconds"] = _REGISTRY_CACHE_TTL_S
    online = (
        {"type": "redis", "connection_string": redis_connection_string(redis_url)}
        if redis_url
        else {"type": "sqlite", "path": str(feast_dir / "online.db")}
    )
    return {
        "TRADELOOP_HOME": str(settings.home),
        "TRADELOOP_FEAST_REGISTRY": json.dumps(registry),
        "TRADELOOP_FEAST_ONLINE_STORE": json.dumps(online),
    }


def repo_config(settings: Settings, environ: Mapping[str, str] | None = None) -> RepoConfig:
    """``feature_store.yaml`` expanded with :func:`feast_environment`, without touching os.environ."""
    text = (REPO_DIR / "feature_store.yaml").read_text()
    env = os.environ if environ is None else environ
    expanded = string.Template(text).safe_substitute({**env, **feast_environment(settings, env)})
    config = RepoConfig(**yaml.safe_load(expanded))
    config.repo_path = REPO_DIR
    return config


def open_store(settings: Settings, environ: Mapping[str, str] | None = None) -> FeatureStore:
    """A FeatureStore on this home's stores (``environ`` overrides os.environ for the URLs)."""
    (settings.feast_dir).mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(REPO_DIR), config=repo_config(settings, environ))


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ for the duration (definitions.py reads TRADELOOP_HOME)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _repo_objects(settings: Settings, environ: Mapping[str, str] | None) -> list[Any]:
    """Every Feast object defined in the repository, imported fresh for this home.

    Uses Feast's own file list (honouring ``.feastignore``) and a fresh module per call, so a
    second home in the same process never sees the first one's paths.
    """
    kinds = (Entity, DataSource, FeatureView, FeatureService)
    found: dict[tuple[str, str], Any] = {}
    with _environment(feast_environment(settings, environ)):
        for path in get_repo_files(REPO_DIR):
            name = f"_tradeloop_feature_repo_{path.stem}_{time.monotonic_ns()}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise InvalidInput("feature_repo", f"cannot import {path}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            for value in vars(module).values():
                if isinstance(value, kinds):
                    found[(type(value).__name__, value.name)] = value
    return list(found.values())


def apply(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Register the repository's objects (what ``feast apply`` does); returns their names."""
    objects = _repo_objects(settings, environ)
    open_store(settings, environ).apply(objects)
    return sorted(f"{type(o).__name__}:{o.name}" for o in objects)


def materialize(store: FeatureStore, *, start: datetime | None = None, end: datetime | None = None) -> None:
    """Load offline rows into the online store: ``start``..``end``, or incrementally to ``end``."""
    end = end or datetime.now(UTC)
    if start is None:
        # Feast starts a view's first incremental run at now - ttl, which for ttl 0 loads
        # nothing: views never materialized start from the beginning instead.
        fresh = [v.name for v in store.list_feature_views() if v.most_recent_end_time is None]
        if fresh:
            store.materialize(start_date=_EPOCH, end_date=end, feature_views=fresh)
        store.materialize_incremental(end_date=end)
    else:
        if start >= end:
            raise InvalidInput("start", f"{start.isoformat()} is not before end {end.isoformat()}")
        store.materialize(start_date=start, end_date=end)


class OnlineWriter:
    """Writes rows for the feature views fed by the ``bar_push`` and ``window_push`` sources.

    ``FeatureStore.push`` looks the push source's views up in the registry on every call (about
    12 ms of proto decoding per push here); the writer resolves them once, through the push
    sources, and hands each batch to the provider's ``ingest_df`` exactly as ``push`` does.
    Each view's rows go in one online-store write: one SQLite transaction, one Redis pipeline
    in which every row is a single atomic HSET, so no row is ever half-written.
    """

    def __init__(self, store: FeatureStore) -> None:
        self._provider = get_provider(store.config)
        views = store.list_feature_views()
        self._views = {
            push: [v for v in views if v.stream_source is not None and v.stream_source.name == push]
            for push in ("bar_push", "window_push")
        }
        for push, found in self._views.items():
            if not found:
                raise InvalidInput("feature_repo", f"no feature view reads push source {push}; run apply")

    def write(self, features: pd.DataFrame, windows: pd.DataFrame) -> None:
        """Window rows first, so a reader who sees bar t's indicators also finds t's window.

        A crash between the two leaves only the window ahead; the restarted ingest re-pushes the
        same bar with identical values.
        """
        for push, frame in (("window_push", windows), ("bar_push", features)):
            if len(frame):
                for view in self._views[push]:
                    self._provider.ingest_df(view, frame)


def push_online(store: FeatureStore, features: pd.DataFrame, windows: pd.DataFrame) -> None:
    """One-off push of both views through their push sources (Feast's own ``push``)."""
    if len(windows):
        store.push("window_push", windows, to=PushMode.ONLINE)
    if len(features):
        store.push("bar_push", features, to=PushMode.ONLINE)


@dataclass(frozen=True, slots=True)
class OnlineRow:
    """The online values of one series; ``age_s`` is now minus the feature event time."""

    series_id: str
    values: dict[str, float | None]
    window: np.ndarray | None  # (W·C,) float32, row-major (W, C)
    event_ts: datetime | None
    window_ts: datetime | None

    def age_s(self, now: datetime | None = None) -> float | None:
        if self.event_ts is None:
            return None
        return ((now or datetime.now(UTC)) - self.event_ts).total_seconds()


def _stamp(ts: datetime | None) -> datetime | None:
    """A tz-aware UTC event time; None for a missing row (Redis reports those at the epoch)."""
    if ts is None or ts.timestamp() == 0:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _float_list(value: ValueProto) -> np.ndarray:
    """A ``float_list_val`` as float32 without a Python float per element.

    The list's wire form is one packed field: tag byte, varint length, then little-endian
    float32s, so the payload is read straight into numpy.
    """
    raw = value.float_list_val.SerializeToString()
    pos, length, shift = 1, 0, 0
    while True:  # varint length after the tag byte
        byte = raw[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if byte < 0x80:
            break
    return np.frombuffer(raw, dtype="<f4", count=length // 4, offset=pos)


@functools.lru_cache(maxsize=4096)
def _decode_ts(raw: bytes | None) -> datetime | None:
    """An event time from its serialized Timestamp (cached: the series of a request, and the
    requests until the next bar, share one)."""
    if not raw:
        return None
    ts = Timestamp()
    ts.ParseFromString(raw)
    return _stamp(datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC))


@functools.lru_cache(maxsize=4096)
def _text_ts(text: str | None) -> datetime | None:
    """An event time as SQLite holds it, read back as Feast's converter reads it (epoch seconds
    of the naive UTC time, through ``datetime.fromtimestamp``; ISO text from older writers); cached
    like :func:`_decode_ts`."""
    if text is None:
        return None
    if text.isdigit():
        return _stamp(datetime.fromtimestamp(int(text)))
    return _stamp(datetime.fromisoformat(text))


def _proto_float(raw: bytes | None) -> float | None:
    """A serialized Value's float_val through protobuf; None when it holds none."""
    value = ValueProto()
    if raw:
        value.ParseFromString(raw)
    return value.float_val if value.HasField("float_val") else None


def _proto_window(raw: bytes | None) -> np.ndarray | None:
    """A serialized Value's float_list_val through protobuf; None when it holds none."""
    if not raw:
        return None
    value = ValueProto()
    value.ParseFromString(raw)
    return _float_list(value) if value.HasField("float_list_val") else None


class OnlineReader:
    """Reads both views of many series with the fewest round trips the store allows.

    SQLite: Feast's own query per view (the table and entity keys as Feast's SQLite store builds
    them), with the event time read once per series instead of once per feature row. Redis: Feast
    keeps every view of an entity in one hash, so one HMGET per series, all sent in one write,
    fetches both views; keys and field names come from Feast's own Redis store, and reads give up
    after :data:`~tradeloop.online_wire.READ_TIMEOUT_S` (a hung Redis is a 503, not a stuck
    server). Values are decoded by :mod:`tradeloop.online_wire` (protobuf for any form it does not
    own); tests check them against ``get_online_features``. bench/online.py, 100 series: Redis 1.4
    ms and SQLite 3.1 ms p50 against 16.5 and 17.8 ms through ``get_online_features``. Re-create
    the reader after ``apply``: it holds the view definitions.
    """

    def __init__(self, store: FeatureStore) -> None:
        self._config = store.config
        self._provider = get_provider(store.config)
        self._features = store.get_feature_view("bar_features")
        self._window = store.get_feature_view("bar_window")
        self._names = [*spec.FEATURE_NAMES, *spec.METADATA]
        self._redis = store.config.online_store.type == "redis"
        self._redis_keys: dict[str, bytes] = {}
        online = self._provider.online_store
        if self._redis:
            self._client = online_wire.read_client(online._get_client(store.config.online_store))
            f_fields = self._hash_fields(online, self._features, self._names)
            self._fields = [*f_fields, *self._hash_fields(online, self._window, ["window"])]
            self._hmget = online_wire.PackedHmget(self._client, self._fields)
        else:
            self._sqlite = online._get_conn(self._config)
            versioned = self._config.registry.enable_online_feature_view_versioning
            self._sqlite_tables = [
                sqlite_store._quote_id(sqlite_store._table_id(self._config.project, view, versioned))
                for view in (self._features, self._window)
            ]
            self._entity_keys: dict[str, bytes] = {}

    def _hash_fields(self, online: Any, view: FeatureView, names: list[str]) -> list[Any]:
        versioned = redis_store._versioned_fv_name(view, self._config)
        return online._generate_hset_keys_for_features(view, list(names), fv_name_override=versioned)[1]

    def read(self, series_ids: Sequence[str]) -> list[OnlineRow]:
        """Online rows in the order asked; a series with no online row raises UnknownSeries."""
        if self._redis:
            return self._read_redis(series_ids)
        return self._read_sqlite(series_ids)

    def _read_sqlite(self, series_ids: Sequence[str]) -> list[OnlineRow]:
        # Feast's own query per view (SqliteOnlineStore.online_read), with the event time read as
        # text: the column's timestamp converter would parse it again for every feature row.
        keys = [self._sqlite_key(sid) for sid in series_ids]
        features, windows = (self._sqlite_rows(table, keys) for table in self._sqlite_tables)
        raws: list[bytes | None] = []
        window_raws, stamps = [], []
        for key in keys:
            values, f_ts = features.get(key, ({}, None))
            w_values, w_ts = windows.get(key, ({}, None))
            raws.extend([values.get(name) for name in self._names])
            window_raws.append(w_values.get("window"))
            stamps.append((_text_ts(f_ts), _text_ts(w_ts)))
        return self._decoded(series_ids, raws, window_raws, stamps)

    def _sqlite_key(self, series: str) -> bytes:
        key = self._entity_keys.get(series)
        if key is None:
            version = self._config.entity_key_serialization_version
            key = self._entity_keys[series] = serialize_entity_key(
                _entity_key(series), entity_key_serialization_version=version
            )
        return key

    def _sqlite_rows(self, table: str, keys: list[bytes]) -> dict[bytes, tuple[dict[str, bytes], str]]:
        """Per entity key: {feature name: serialized Value} and the newest event time as text."""
        found: dict[bytes, tuple[dict[str, bytes], str]] = {}
        cursor = self._sqlite.execute(
            f"SELECT entity_key, feature_name, value, CAST(event_ts AS TEXT) FROM {table} "
            f"WHERE entity_key IN ({','.join('?' * len(keys))})",
            keys,
        )
        for key, name, value, ts in cursor.fetchall():
            entry = found.get(key)
            if entry is None:
                found[key] = ({name: value}, ts)
                continue
            entry[0][name] = value
            if ts > entry[1]:
                found[key] = (entry[0], ts)
        return found

    def _read_redis(self, series_ids: Sequence[str]) -> list[OnlineRow]:
        missing = [s for s in series_ids if s not in self._redis_keys]
        if missing:
            online = self._provider.online_store
            found = online._generate_redis_keys_for_entities(self._config, [_entity_key(s) for s in missing])
            self._redis_keys.update(zip(missing, found, strict=True))
        replies = self._hmget([self._redis_keys[sid] for sid in series_ids])
        n = len(self._names)  # each reply: the features, their event time, the window, its time
        raws = [raw for reply in replies for raw in reply[:n]]
        window_raws = [reply[n + 1] for reply in replies]
        stamps = [(_decode_ts(reply[n]), _decode_ts(reply[n + 2])) for reply in replies]
        return self._decoded(series_ids, raws, window_raws, stamps)

    def _decoded(
        self,
        series_ids: Sequence[str],
        raws: list[bytes | None],
        window_raws: list[bytes | None],
        stamps: list[tuple[datetime | None, datetime | None]],
    ) -> list[OnlineRow]:
        """Online rows from each series' serialized feature values (``self._names`` order, series
        after series), serialized window and (feature, window) event times, as either store holds
        them; fast paths of :mod:`tradeloop.online_wire`, protobuf for any other form."""
        n = len(self._names)
        floats = online_wire.float_values(raws)
        if floats is None:  # some value is missing or not a plain float: protobuf decides
            floats = [_proto_float(raw) for raw in raws]
        rows = []
        for i, (sid, raw_window, (event_ts, window_ts)) in enumerate(
            zip(series_ids, window_raws, stamps, strict=True)
        ):
            if event_ts is None and window_ts is None:
                raise UnknownSeries(sid, "no online features; run `tradeloop features materialize`")
            window = online_wire.float_list(raw_window)
            if window is None:
                window = _proto_window(raw_window)
            values = dict(zip(self._names, floats[i * n : (i + 1) * n], strict=True))
            rows.append(OnlineRow(sid, values, window, event_ts, window_ts))
        return rows


def _entity_key(series: str) -> EntityKeyProto:
    return EntityKeyProto(join_keys=["series_id"], entity_values=[ValueProto(string_val=series)])


def read_online(store: FeatureStore, series_ids: Sequence[str]) -> list[OnlineRow]:
    """One-off online read (builds an :class:`OnlineReader`; keep one for repeated reads)."""
    return OnlineReader(store).read(series_ids)


def historical_features(store: FeatureStore, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join of ``bar_features`` onto rows of (series_id, event_timestamp, …).

    For each row Feast returns the latest feature row with ``ts <= event_timestamp`` (ties broken
    by the later ``created``), so no value from after a row's timestamp can appear.
    """
    missing = {"series_id", "event_timestamp"} - set(entity_rows.columns)
    if missing:
        raise InvalidInput("entity_rows", f"missing columns {sorted(missing)}")
    refs = [r for r in FEATURE_REFS if r.startswith("bar_features:")]
    job = store.get_historical_features(entity_df=entity_rows, features=refs)
    return job.to_df()

"""Feast's online values read straight from the bytes Redis holds, and HMGETs sent pre-packed.

Why this exists: for a 100-series request, reading the online rows through redis-py's pipeline and
one protobuf ``Value`` per field took ~4 ms on 2 cores (bench/online.py, bench/predict_core.py),
most of a prediction's time. Two things made it slow, and both are fixed here without changing a
value:

* decoding: Feast stores each feature as a serialized ``feast.types.Value``; a float feature is
  always the same five bytes (tag ``0x35`` = field 6 ``float_val``, fixed32, then the
  little-endian float32), and the window is one packed ``float_list_val``. :func:`float_values`
  reads every feature of a request with one numpy view and :func:`float_list` reads a window
  without copying it through protobuf. Anything not in exactly that form (a missing value, another
  type, a future encoding) gives ``None``, and the caller decodes it with protobuf as before, so
  these are fast paths, never different answers (tests compare them with protobuf and with
  Feast's own ``get_online_features``).
* commands: redis-py's pipeline re-encodes every ``HMGET key f1 … f26`` per call. The fields
  never change and the keys repeat, so :class:`PackedHmget` packs each command once (with
  redis-py's own ``pack_command``), writes a request's commands in one ``sendall`` and reads
  the replies on a connection from the client's pool (redis-py's own ``read_response``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["READ_TIMEOUT_S", "PackedHmget", "float_list", "float_values", "read_client"]

READ_TIMEOUT_S = 1.0  # a read that takes longer fails (503) instead of holding a server thread
_FLOAT_TAG = 0x35  # Value.float_val: field 6, wire type 5 (fixed32)
_FLOAT_SIZE = 5  # tag byte + float32
_FLOAT_LIST_TAG = b"\x82\x01"  # Value.float_list_val: field 16, wire type 2 (length-delimited)
_PACKED_VALUES_TAG = 0x0A  # FloatList.val: field 1, wire type 2 (packed)


def float_values(raws: Sequence[bytes | None]) -> list[float] | None:
    """The ``float_val`` of each serialized Value, as Python floats (what protobuf's
    ``Value.float_val`` gives); None unless every one is a plain 5-byte float_val."""
    if not raws or None in raws:
        return None
    if set(map(len, raws)) != {_FLOAT_SIZE}:
        return None
    cells = np.frombuffer(b"".join(raws), dtype=np.uint8).reshape(-1, _FLOAT_SIZE)
    if not (cells[:, 0] == _FLOAT_TAG).all():
        return None
    return np.ascontiguousarray(cells[:, 1:]).view("<f4").ravel().tolist()


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``; IndexError past the end."""
    value, shift = 0, 0
    while True:
        byte = raw[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def float_list(raw: bytes | None) -> np.ndarray | None:
    """A serialized Value's non-empty ``float_list_val`` as a float32 array over ``raw``'s bytes
    (read-only, no copy); None unless ``raw`` is exactly that one packed field."""
    if not raw or not raw.startswith(_FLOAT_LIST_TAG):
        return None
    try:
        outer, pos = _varint(raw, len(_FLOAT_LIST_TAG))
        if pos + outer != len(raw) or raw[pos] != _PACKED_VALUES_TAG:
            return None
        length, pos = _varint(raw, pos + 1)
    except IndexError:
        return None
    if length == 0 or length % 4 or pos + length != len(raw):
        return None
    return np.frombuffer(raw, dtype="<f4", count=length // 4, offset=pos)


class PackedHmget:
    """``HMGET key *fields`` for many keys: one write, then one reply per key, in order.

    Each key's command is packed once and kept. A connection comes from the client's own pool
    for one call, so threads never share one; the pool replaces a connection the server has
    closed (a Redis restart), and one that fails or whose replies are left unread (an error reply
    part-way) is disconnected, never reused.
    """

    def __init__(self, client: Any, fields: Sequence[bytes]) -> None:
        self._pool = client.connection_pool
        self._fields = tuple(fields)
        self._packed: dict[bytes, bytes] = {}

    def _command(self, key: bytes) -> bytes:
        packed = self._packed.get(key)
        if packed is None:
            connection = self._pool.get_connection()
            try:
                packed = b"".join(connection.pack_command("HMGET", key, *self._fields))
            finally:
                self._pool.release(connection)
            self._packed[key] = packed  # one per series: as many as the store holds
        return packed

    def __call__(self, keys: Sequence[bytes]) -> list[list[bytes | None]]:
        payload = b"".join([self._command(key) for key in keys])
        connection = self._pool.get_connection()  # reconnects one the server has closed
        try:
            connection.send_packed_command([payload], check_health=False)
            return [connection.read_response() for _ in keys]
        except BaseException:
            connection.disconnect()  # replies may be left unread: never reuse this stream
            raise
        finally:
            self._pool.release(connection)


def read_client(client: Any, timeout_s: float = READ_TIMEOUT_S) -> Any:
    """A client on the same server as ``client`` whose connections give up after ``timeout_s``.

    Feast's Redis client waits forever on a socket by default; a Redis that hangs (stopped, or a
    network path that drops packets) would then hold every prediction, and, for the small ones
    KServe answers on its event loop, health probes with them. The reads get their own pool with
    a socket and connect timeout (redis-py's ``TimeoutError``, which the predictor answers as
    503); Feast's writes keep its client. A pool of another kind (Sentinel) or one configured
    with its own timeout is used as it is.
    """
    import redis

    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    if type(pool) is not redis.ConnectionPool or kwargs.get("socket_timeout") is not None:
        return client
    kwargs["socket_timeout"] = timeout_s
    kwargs["socket_connect_timeout"] = kwargs.get("socket_connect_timeout") or timeout_s
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))

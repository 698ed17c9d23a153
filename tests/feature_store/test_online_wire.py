"""The Redis fast paths (tradeloop.online_wire) against protobuf's own decoder and a real redis-server.

Every value is serialized by Feast's protobuf ``Value`` (an independent encoder), decoded by the
fast path, and compared with what protobuf's decoder reads back; forms the fast path does not
own must come back ``None`` so the reader falls back to protobuf. ``PackedHmget`` is compared
with redis-py's own pipeline on a throwaway redis-server, including an error reply part-way
through a request and connections the server drops.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from feast.protos.feast.types.Value_pb2 import DoubleList, FloatList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from tests.feature_store.conftest import redis_server
from tradeloop import online_wire

SPECIAL = [0.0, -0.0, 1.0, -1.5, float("inf"), float("-inf"), 3.4028234663852886e38, 1.401298464324817e-45]


def _float(value: float) -> bytes:
    return ValueProto(float_val=value).SerializeToString()


def _protobuf_float(raw: bytes) -> float:
    value = ValueProto()
    value.ParseFromString(raw)
    assert value.HasField("float_val")
    return value.float_val


def test_float_values_are_what_protobuf_reads() -> None:
    rng = np.random.default_rng(7)
    values = [*SPECIAL, *rng.normal(0, 1e3, 500).tolist(), *rng.uniform(-1e-30, 1e-30, 50).tolist()]
    raws = [_float(v) for v in values]
    got = online_wire.float_values(raws)
    assert got is not None
    expected = [_protobuf_float(raw) for raw in raws]
    assert np.array_equal(np.asarray(got), np.asarray(expected))
    assert [np.signbit(v) for v in got] == [np.signbit(v) for v in expected]  # -0.0 stays negative
    assert all(type(v) is float for v in got)


def test_float_nan_is_read_as_nan() -> None:
    got = online_wire.float_values([_float(float("nan")), _float(2.0)])
    assert got is not None
    assert np.isnan(got[0])
    assert got[1] == 2.0


@pytest.mark.parametrize(
    "odd",
    [
        None,  # HMGET of a field the hash lacks
        b"",  # a Value with nothing set
        ValueProto(double_val=1.0).SerializeToString(),
        ValueProto(int64_val=5).SerializeToString(),
        ValueProto(string_val="abcd").SerializeToString(),  # six bytes
        ValueProto(bool_val=True).SerializeToString(),
    ],
)
def test_anything_but_plain_float_values_is_left_to_protobuf(odd: bytes | None) -> None:
    raws = [_float(1.0), odd, _float(2.0)]
    assert online_wire.float_values(raws) is None


def test_a_five_byte_value_of_another_field_is_not_read_as_a_float() -> None:
    raw = ValueProto(int32_val=2**27).SerializeToString()
    assert len(raw) == 5
    assert online_wire.float_values([raw]) is None


@pytest.mark.parametrize("n", [1, 3, 31, 32, 320, 5000])
def test_float_list_is_what_protobuf_reads(n: int) -> None:
    values = np.random.default_rng(n).normal(0, 10, n).astype(np.float32)
    raw = ValueProto(float_list_val=FloatList(val=values.tolist())).SerializeToString()
    got = online_wire.float_list(raw)
    parsed = ValueProto()
    parsed.ParseFromString(raw)
    assert got is not None
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.asarray(parsed.float_list_val.val, dtype=np.float32))


def test_other_lists_and_damaged_lists_are_left_to_protobuf() -> None:
    good = ValueProto(float_list_val=FloatList(val=[1.0, 2.0, 3.0])).SerializeToString()
    assert online_wire.float_list(good) is not None
    for odd in (
        None,
        b"",
        ValueProto(float_list_val=FloatList(val=[])).SerializeToString(),
        ValueProto(double_list_val=DoubleList(val=[1.0, 2.0])).SerializeToString(),
        _float(1.0),
        good[:-1],  # cut short
        good + b"\x00",  # trailing bytes
        good[:2] + b"\xff",  # a varint that runs off the end
    ):
        assert online_wire.float_list(odd) is None, odd


# -- PackedHmget on a real redis-server ---------------------------------------------------------------
FIELDS = [b"a", b"b", b"window"]


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    for i in range(20):
        client.hset(f"k{i}", mapping={"a": f"a{i}", "window": bytes(range(i + 1)) * 100})
    client.set("plain", "not a hash")
    return client


def _pipeline(client: redis.Redis, keys: list[bytes]) -> list[list[bytes | None]]:
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, FIELDS)
        return pipe.execute()


def test_packed_hmget_answers_what_the_pipeline_answers(client: redis.Redis) -> None:
    hmget = online_wire.PackedHmget(client, FIELDS)
    keys = [f"k{i}".encode() for i in (3, 0, 19, 3)] + [b"absent"]
    expected = _pipeline(client, keys)
    assert expected[-1] == [None, None, None]
    assert expected[0][1] is None
    assert hmget(keys) == expected
    assert hmget(keys[:1]) == expected[:1]  # packed commands are kept and reused


def test_an_error_reply_part_way_leaves_no_unread_replies_behind(client: redis.Redis) -> None:
    hmget = online_wire.PackedHmget(client, FIELDS)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        hmget([b"k1", b"plain", b"k2", b"k3"])
    keys = [b"k5", b"k6"]
    assert hmget(keys) == _pipeline(client, keys)  # not the replies left from the failed call


def test_connections_the_server_dropped_are_replaced(client: redis.Redis) -> None:
    hmget = online_wire.PackedHmget(client, FIELDS)
    keys = [b"k7"]
    assert hmget(keys) == _pipeline(client, keys)
    killer = redis.Redis.from_url(_url(client))
    assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
    assert hmget(keys) == _pipeline(client, keys)


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_threads_each_get_their_own_replies(client: redis.Redis) -> None:
    hmget = online_wire.PackedHmget(client, FIELDS)
    expected = {i: _pipeline(client, [f"k{i}".encode(), f"k{i + 1}".encode()]) for i in range(8)}
    wrong: list[int] = []

    def work(i: int) -> None:
        for _ in range(200):
            if hmget([f"k{i}".encode(), f"k{i + 1}".encode()]) != expected[i]:
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


# -- a Redis that hangs ---------------------------------------------------------------------------------
@pytest.fixture
def stoppable_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of this test's own, so that it can be stopped (SIGSTOP) like a hung server."""
    with redis_server(tmp_path) as server:
        yield server


def test_a_hung_redis_fails_the_read_instead_of_holding_it(
    stoppable_redis: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = stoppable_redis
    writer = redis.Redis.from_url(url)
    writer.hset("k1", mapping={"a": "one"})
    writer.hset("k2", mapping={"a": "two"})
    hmget = online_wire.PackedHmget(online_wire.read_client(redis.Redis.from_url(url), timeout_s=0.3), FIELDS)
    assert hmget([b"k1"]) == [[b"one", None, None]]
    proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            hmget([b"k1"])
        assert time.monotonic() - started < 10, "the read waited far beyond its timeout"
    finally:
        proc.send_signal(signal.SIGCONT)
    # The stopped server answers the timed-out read late; that reply must not answer the next one.
    assert hmget([b"k2"]) == [[b"two", None, None]]


def test_a_client_with_its_own_timeout_is_read_as_configured(redis_url: str) -> None:
    configured = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    assert online_wire.read_client(configured) is configured
    plain = online_wire.read_client(redis.Redis.from_url(redis_url))
    assert plain.connection_pool.connection_kwargs["socket_timeout"] == online_wire.READ_TIMEOUT_S

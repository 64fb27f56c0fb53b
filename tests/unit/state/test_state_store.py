"""State store: catalog and KV semantics, indexes, watches, snapshot/restore."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet import task

from wanfedtx.catalog.structs import decode_register_request
from wanfedtx.state import StateStore, WatchSet
from wanfedtx.state.blocking import blocking_query, query_timeout
from wanfedtx.state.errors import InvalidMetadataError, MissingServiceError, SnapshotFormatError
from wanfedtx.state.snapshot import decode, encode


def reg(node: str = "n1", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"Node": node, "Address": "10.0.0.1"}
    body.update(kw)
    return decode_register_request(body)


def test_register_service_on_unknown_node_creates_node() -> None:
    s = StateStore()
    s.ensure_registration(5, reg(Service={"Service": "web", "Port": 80, "Tags": ["a"]}))
    idx, nodes = s.list_nodes(None)
    assert idx == 5 and [n["Node"] for n in nodes] == ["n1"]
    idx, services = s.list_services(None)
    assert idx == 5 and services == {"web": ["a"]}
    idx, inst = s.service_nodes(None, "WEB")
    assert [(n["Node"], sv["ID"], sv["Port"]) for n, sv in inst] == [("n1", "web", 80)]


def test_same_registration_does_not_bump_index() -> None:
    s = StateStore()
    s.ensure_registration(5, reg(Service={"Service": "web"}))
    s.ensure_registration(6, reg(Service={"Service": "web"}))
    assert s.max_index("nodes", "services") == 5
    s.ensure_registration(7, reg(Service={"Service": "web", "Port": 1}))
    assert s.max_index("nodes") == 5 and s.max_index("services") == 7
    _, node = s.get_node(None, "n1")
    assert node is not None and node["CreateIndex"] == 5


def test_deregister_node_removes_services_and_checks() -> None:
    s = StateStore()
    s.ensure_registration(
        1,
        reg(
            Service={"Service": "web", "ID": "web1"},
            Checks=[{"CheckID": "c1", "ServiceID": "web1", "Status": "passing"}, {"Name": "n"}],
        ),
    )
    _, checks = s.node_checks(None, "n1")
    assert {c["CheckID"]: c["ServiceName"] for c in checks} == {"c1": "web", "n": ""}
    s.deregister(2, "n1")
    assert s.list_nodes(None)[1] == []
    assert s.list_services(None)[1] == {}
    assert s.checks_in_state(None, "any") == (2, [])


def test_deregister_service_removes_its_checks_only() -> None:
    s = StateStore()
    s.ensure_registration(
        1, reg(Service={"Service": "web"}, Checks=[{"CheckID": "c1", "ServiceID": "web"}])
    )
    s.ensure_registration(2, reg(Check={"CheckID": "node-check", "Status": "passing"}))
    s.deregister(3, "n1", service_id="web")
    _, checks = s.node_checks(None, "n1")
    assert [c["CheckID"] for c in checks] == ["node-check"]


def test_check_for_unknown_service_is_refused_and_nothing_written() -> None:
    s = StateStore()
    with pytest.raises(MissingServiceError):
        s.ensure_registration(1, reg(Check={"CheckID": "c", "ServiceID": "nope"}))
    assert s.list_nodes(None) == (0, [])


def test_reserved_meta_prefix_rules() -> None:
    s = StateStore()
    meta = {"consul-wan-federation": "1"}
    with pytest.raises(InvalidMetadataError, match="Key prefix 'consul-' is reserved"):
        s.ensure_registration(1, reg(Service={"Service": "web", "Meta": meta}))
    s.ensure_registration(
        2, reg(Service={"Service": "mesh-gateway", "Kind": "mesh-gateway", "Meta": meta})
    )
    with pytest.raises(InvalidMetadataError):
        s.ensure_registration(
            3,
            reg(Service={"Service": "gw", "Kind": "mesh-gateway", "Meta": {"consul-other": "1"}}),
        )
    _, dump = s.check_service_nodes(None, kind="mesh-gateway")
    assert [sv["Meta"] for _, sv, _ in dump] == [meta]


def test_health_checks_in_state() -> None:
    s = StateStore()
    s.ensure_registration(1, reg(Check={"CheckID": "a", "Status": "passing"}))
    s.ensure_registration(2, reg(Check={"CheckID": "b"}))
    assert [c["CheckID"] for c in s.checks_in_state(None, "critical")[1]] == ["b"]
    assert [c["CheckID"] for c in s.checks_in_state(None, "passing")[1]] == ["a"]


def test_kv_set_keeps_create_index_and_cas() -> None:
    s = StateStore()
    s.kvs_set(3, {"Key": "a", "Value": b"1", "Flags": 7})
    s.kvs_set(4, {"Key": "a", "Value": b"2"})
    _, e = s.kvs_get(None, "a")
    assert e is not None and (e["CreateIndex"], e["ModifyIndex"], e["Value"]) == (3, 4, b"2")
    assert s.kvs_set_cas(5, {"Key": "a", "Value": b"x", "ModifyIndex": 0}) is False
    assert s.kvs_set_cas(5, {"Key": "b", "Value": b"x", "ModifyIndex": 0}) is True
    assert s.kvs_set_cas(6, {"Key": "a", "Value": b"x", "ModifyIndex": 3}) is False
    assert s.kvs_set_cas(6, {"Key": "a", "Value": b"x", "ModifyIndex": 4}) is True
    assert s.kvs_delete_cas(7, 5, "a") is False
    assert s.kvs_delete_cas(7, 6, "a") is True
    assert s.kvs_get(None, "a") == (7, None)


def test_kv_list_index_rises_after_delete_and_delete_tree() -> None:
    s = StateStore()
    for i, k in enumerate(["foo/a", "foo/b/c", "foo/b/d", "zoo"], start=1):
        s.kvs_set(i, {"Key": k, "Value": b"v"})
    assert s.kvs_list(None, "foo/")[0] == 3
    assert s.kvs_list_keys(None, "foo/", "/") == (3, ["foo/a", "foo/b/"])
    s.kvs_delete(10, "foo/a")
    idx, rows = s.kvs_list(None, "foo/")
    assert idx == 10 and [r["Key"] for r in rows] == ["foo/b/c", "foo/b/d"]
    s.kvs_delete_tree(11, "foo/")
    assert s.kvs_list(None, "foo/") == (11, [])
    assert [r["Key"] for r in s.kvs_list(None, "")[1]] == ["zoo"]
    s.reap_tombstones(11)
    assert s.kvs_list(None, "foo/") == (11, [])  # falls back to the table index


def test_watch_fires_on_key_write_only() -> None:
    s = StateStore()
    ws = WatchSet()
    s.kvs_get(ws, "a")
    results: list[bool] = []
    ws.subscribe(lambda: results.append(True))
    s.kvs_set(1, {"Key": "b", "Value": b""})
    assert results == []
    s.kvs_set(2, {"Key": "a", "Value": b""})
    assert results == [True]


def test_watch_prefix_and_abandoned_channels() -> None:
    s = StateStore()
    ws = WatchSet()
    s.kvs_list(ws, "foo/")
    results: list[bool] = []
    ws.subscribe(lambda: results.append(True))
    s.kvs_set(1, {"Key": "fo", "Value": b""})  # not under the prefix
    assert results == []
    assert len(s.tables["kvs"]._prefix_watch) == 1
    ws.close()  # a waiter that gives up (its wait expired)
    # The abandoned channel was discarded: nobody watches anymore.
    assert len(s.tables["kvs"]._prefix_watch) == 0
    s.kvs_set(2, {"Key": "foo/x", "Value": b""})
    assert results == []


def test_blocking_query_unblocks_on_write_and_times_out() -> None:
    s = StateStore()
    clock = task.Clock()
    rng = random.Random(1)
    s.kvs_set(5, {"Key": "k", "Value": b"1"})
    got: list[Any] = []
    blocking_query(clock, rng, 0, None, lambda ws: s.kvs_get(ws, "k")).addCallback(got.append)
    assert got[0][0] == 5
    blocking_query(clock, rng, 5, 30, lambda ws: s.kvs_get(ws, "k")).addCallback(got.append)
    assert len(got) == 1
    s.kvs_set(6, {"Key": "other", "Value": b"1"})  # another key: still blocked
    assert len(got) == 1
    s.kvs_set(7, {"Key": "k", "Value": b"2"})
    assert len(got) == 2 and got[1][0] == 7 and got[1][1]["Value"] == b"2"
    blocking_query(clock, rng, 7, 30, lambda ws: s.kvs_get(ws, "k")).addCallback(got.append)
    clock.advance(30)
    assert len(got) == 2
    clock.advance(30 / 16)
    assert len(got) == 3 and got[2][0] == 7
    # An empty store still reports index 1.
    blocking_query(clock, rng, 0, None, lambda ws: StateStore().kvs_get(ws, "x")).addCallback(
        got.append
    )
    assert got[3] == (1, None)


def test_query_timeout_defaults_caps_and_jitter() -> None:
    class Fixed(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    assert query_timeout(None, Fixed(0.0)) == 300
    assert query_timeout(0, Fixed(0.0)) == 300
    assert query_timeout(9999, Fixed(0.0)) == 600
    assert query_timeout(16, Fixed(0.999)) == pytest.approx(16.999)


def test_snapshot_restore_round_trip_and_fires_watches() -> None:
    s = StateStore()
    s.ensure_registration(1, reg(Service={"Service": "web"}, Check={"CheckID": "c"}))
    for i in range(200):
        s.kvs_set(2 + i, {"Key": f"k/{i:03d}", "Value": bytes([i % 256]) * 500})
    s.kvs_delete(300, "k/000")
    chunks = list(s.snapshot_chunks(chunk_size=4096))
    assert len(chunks) > 10
    s2 = StateStore()
    ws = WatchSet()
    s2.kvs_get(ws, "k/001")
    fired: list[bool] = []
    ws.subscribe(lambda: fired.append(True))
    s2.restore_chunks(chunks)
    assert fired == [True]
    assert list(s2.snapshot_records()) == list(s.snapshot_records())
    assert s2.kvs_list(None, "k/")[0] == 300
    assert s2.service_nodes(None, "web")[0] == 1


def test_restore_rejects_bad_streams_and_keeps_store() -> None:
    s = StateStore()
    s.kvs_set(1, {"Key": "keep", "Value": b"1"})
    good = b"".join(encode([("kvs", {"Key": "x", "Value": b"", "ModifyIndex": 1})]))
    unhashable_key = good + b"\x92\xa3kvs\x81\x90\x00"  # then a row keyed by an array
    for bad in (b"", good[:-3], b"\x93\x01\x02\x03", b"".join(encode([("nope", {"a": 1})])),
                unhashable_key):
        with pytest.raises(SnapshotFormatError):
            s.restore_chunks([bad])
    assert s.kvs_get(None, "keep")[1] is not None
    assert list(decode([good[:5], good[5:]])) == [
        ("kvs", {"Key": "x", "Value": b"", "ModifyIndex": 1})
    ]

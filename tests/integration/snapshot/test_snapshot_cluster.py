"""Snapshots of a real three-server datacenter (raft over the RPC port on 127.0.0.1-3):
``wanfed snapshot save`` under KV write load, every server's data wiped, a fresh cluster
restored with ``wanfed snapshot restore``, and every key and federation state written before the
save back on every server (and nothing written after it). Then the raw ``consul/rpc-snapshot``
stream on :8300 as Consul's client speaks it (type byte 5, header, half-close), and a truncated
restore stream closed with one log line and nothing changed."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import msgpack
import pytest
import pytest_twisted
import treq
from agent_support import elect_and_replicate, fast_serf, http_on_port_zero, until
from log_support import captured_logs
from netutil import free_port
from twisted.internet import task, threads
from twisted.internet.defer import Deferred

from wanfedtx.agent.agent import Agent
from wanfedtx.cli.main import main
from wanfedtx.config import LoadOptions, load
from wanfedtx.snapshot.archive import read_archive

pytestmark = pytest.mark.integration

IPS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


def _config(tmp: Path, name: str, ip: str, ports: dict[str, int]) -> Any:
    hcl = tmp / f"{name}.hcl"
    hcl.write_text("\n".join([
        'datacenter = "dc1"', f'node_name = "{name}"', "server = true", f'bind_addr = "{ip}"',
        f'client_addr = "{ip}"', f'data_dir = "{tmp / "data" / name}"', "bootstrap_expect = 3",
        'retry_join = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]',
        "performance { raft_multiplier = 1 }",
        f"ports {{ server = {ports['server']} dns = -1 "
        f"serf_lan = {ports['serf_lan']} serf_wan = {ports['serf_wan']} }}",
    ]) + "\n")
    return http_on_port_zero(load(LoadOptions(config_files=[str(hcl)])).runtime)


async def _start(reactor: Any, tmp: Path, ports: dict[str, int]) -> tuple[list[Agent], list[str]]:
    agents = [Agent(_config(tmp, f"s{i + 1}", ip, ports), reactor, serf_tuning=fast_serf)
              for i, ip in enumerate(IPS)]
    for a in agents:
        a.startService()
    bases = [a.http_urls()[0] for a in agents]
    await elect_and_replicate(reactor, agents, bases, seconds=30.0)
    return agents, bases


async def _stop(agents: list[Agent]) -> None:
    for a in agents:
        await a.stopService()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    async def go() -> tuple[int, str, str]:
        code = await threads.deferToThread(main, list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return go()


def _keys(agent: Agent) -> dict[str, bytes]:
    snapshots = agent.snapshots
    assert snapshots is not None
    return {r["Key"]: r["Value"] for r in snapshots.fsm.state.tables["kvs"].all()}


def _fed_dcs(agent: Agent) -> list[str]:
    snapshots = agent.snapshots
    assert snapshots is not None
    _, states = snapshots.fsm.state.federation_state_list(None)
    return [s.datacenter for s in states]


def _raw_rpc(addr: tuple[str, int], payload: bytes, half_close: bool) -> bytes:
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(payload)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


@pytest_twisted.ensureDeferred
async def test_save_under_load_wipe_restore_and_raw_stream(
    reactor: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = {"server": free_port(), "serf_lan": free_port(), "serf_wan": free_port()}
    agents, bases = await _start(reactor, tmp_path, ports)
    try:
        leader = next(a for a in agents if a.raft is not None and a.raft.is_leader())
        assert leader.catalog is not None
        for dc in ("dc2", "dc3"):
            await leader.catalog.rpc("FederationState.Apply", {
                "Datacenter": "dc1", "Op": "upsert",
                "State": {"Datacenter": dc, "MeshGateways": []}})
        acked: list[str] = []
        started: list[str] = []
        stop = [False]

        async def writer(n: int) -> None:
            i = 0
            while not stop[0]:
                key = f"load/{n}/{i}"
                started.append(key)
                resp = await treq.put(bases[n] + f"/v1/kv/{key}", data=key.encode())
                assert resp.code == 200, await resp.text()
                await resp.content()
                acked.append(key)
                i += 1

        writers = [Deferred.fromCoroutine(writer(n)) for n in range(3)]
        await until(reactor, "writes under way", lambda: len(acked) >= 60, 30.0)
        before_save = list(acked)
        path = tmp_path / "backup.snap"
        code, out, err = await _cli(capsys, "snapshot", "save", f"-http-addr={bases[1]}",
                                    str(path))
        assert (code, err) == (0, ""), err
        assert out.startswith("Saved and verified snapshot to index ")
        after_save = len(acked)
        # A write in flight when the save returned may be in the snapshot or not (it may have
        # been applied before the snapshot and answered after); only the writes started after
        # the save returned must be missing from it.
        in_flight_or_before = set(started)
        await until(reactor, "writes after the save", lambda: len(acked) >= after_save + 30, 30)
        stop[0] = True
        for w in writers:
            await w
        written_after = [k for k in acked[after_save:] if k not in in_flight_or_before]
        assert len(written_after) >= 27  # 30 acknowledged, at most one in flight per writer
        meta, _ = read_archive(path.read_bytes())
        assert out.strip().endswith(f" {meta.index}")
    finally:
        await _stop(agents)

    # every server's data is gone; a fresh datacenter comes up empty
    shutil.rmtree(tmp_path / "data")
    agents, bases = await _start(reactor, tmp_path, ports)
    try:
        assert all(not k.startswith("load/") for a in agents for k in _keys(a))
        code, out, err = await _cli(capsys, "snapshot", "restore", f"-http-addr={bases[2]}",
                                    str(path))
        assert (code, out, err) == (0, "Restored snapshot\n", "")

        def restored_everywhere() -> bool:
            # dc1's own federation state may be there too (anti-entropy runs on every server)
            return all(set(before_save) <= set(_keys(a)) and {"dc2", "dc3"} <= set(_fed_dcs(a))
                       for a in agents)

        await until(reactor, "the snapshot's keys and federation states on every server",
                    restored_everywhere, 30.0)
        for a in agents:
            keys = _keys(a)
            assert all(keys[k] == k.encode() for k in before_save)
            assert not set(written_after) & set(keys)
        # a write after the restore is indexed above everything restored
        resp = await treq.put(bases[0] + "/v1/kv/after-restore", data=b"x")
        assert resp.code == 200
        rows = agents[0].snapshots.fsm.state.tables["kvs"]  # type: ignore[union-attr]
        await until(reactor, "the write on server 0", lambda: rows.get("after-restore") is not None)
        new_index = rows.get("after-restore")["ModifyIndex"]
        assert all(r["ModifyIndex"] < new_index for r in rows.all()
                   if r["Key"] != "after-restore")

        # Consul's client on the raw port: byte 5, the header, a half-close
        leader_i = next(i for i, a in enumerate(agents) if a.raft and a.raft.is_leader())
        addr = (IPS[leader_i], ports["server"])
        header = {"Datacenter": "dc1", "Token": "", "AllowStale": False, "Op": 0}
        data = await threads.deferToThread(
            _raw_rpc, addr, b"\x05" + msgpack.packb(header, use_bin_type=False), True)
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(data)
        reply = unpacker.unpack()
        assert reply["Error"] == "" and reply["KnownLeader"] is True
        meta2, _ = read_archive(data[unpacker.tell():])
        assert meta2.index == reply["Index"]

        # a truncated restore stream: closed, one log line, nothing changed
        before = _keys(agents[leader_i])
        restore = b"\x05" + msgpack.packb({**header, "Op": 1}, use_bin_type=False)
        with captured_logs() as events:
            await threads.deferToThread(
                _raw_rpc, addr, restore + path.read_bytes()[:200], True)

            def logged() -> bool:
                return any("Snapshot RPC error" in str(e.get("log_format", ""))
                           for e in events)

            await until(reactor, "the truncated stream's log line", logged, 10.0)
        lines = [e for e in events if "Snapshot RPC error" in str(e.get("log_format", ""))]
        assert len(lines) == 1
        assert lines[0]["error"] == "stream ended before the snapshot archive was complete"
        assert lines[0]["peer"].startswith("127.0.0.")
        await task.deferLater(reactor, 0.2, lambda: None)
        assert _keys(agents[leader_i]) == before
    finally:
        await _stop(agents)

"""Benchmark: Status.Ping over rpc-multi with native TLS on loopback, direct and via one SNI hop.

Each scenario opens ONE TLS connection (ALPN ``consul/rpc-multi``, SNI
``pri.server.primary.consul``, client certificate) and keeps C calls in flight for a fixed time,
recording each call's latency. The SNI hop is the project's gateway relay
(``wanfedtx.gateway.relay.RelayFactory``, twisted data path) routing that SNI to the server.

    .venv/bin/python bench/rpc/bench_rpc.py [--seconds 5] [--concurrency 1,64] [--split]

``--split`` runs the RPC server (and the relay) in a child process so client and server use
separate cores; otherwise everything shares one reactor. TLS is the agent's own:
``wanfedtx.tls.configurator.TLSConfigurator`` with certificates from ``wanfedtx.tls.certs``
(verify_incoming/outgoing/server_hostname on, as in case-wanfed-gw).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer

from wanfedtx.metrics import Registry
from wanfedtx.rpc.constants import ALPN_RPC_MULTIPLEX_V2, RPCType
from wanfedtx.rpc.dial import Dialer
from wanfedtx.rpc.endpoints import default_endpoints
from wanfedtx.rpc.protocol import RPCClientProtocol, RPCHandler
from wanfedtx.rpc.registry import HandlerRegistry
from wanfedtx.rpc.server import RPCPortFactory
from wanfedtx.testing.pki import PKI
from wanfedtx.tls.configurator import TLSConfigurator, TLSSettings

SNI_NODE, SNI_DC = "pri", "primary"


def start_server(reactor: Any, tls: TLSConfigurator) -> int:
    reg = HandlerRegistry()
    reg.register(RPCType.MULTIPLEX_V2, RPCHandler(default_endpoints(), multi=True))
    port = reactor.listenTCP(
        0, RPCPortFactory(reg, reactor, tls, metrics=Registry()), interface="127.0.0.1"
    )
    return int(port.getHost().port)


def start_relay(reactor: Any, server_port: int) -> int:
    from wanfedtx.gateway.relay import RelayFactory, RelaySettings
    from wanfedtx.gateway.router import RouteTable
    from wanfedtx.gateway.routes import routes_to_snapshot
    from wanfedtx.gateway.stats import GatewayStats

    snap = routes_to_snapshot(
        {
            "clusters": [
                {"name": "pri", "endpoints": [{"address": "127.0.0.1", "port": server_port}]}
            ],
            "filter_chains": [
                {
                    "server_names": [f"{SNI_NODE}.server.{SNI_DC}.consul"],
                    "cluster": "pri",
                    "stat_prefix": "bench",
                }
            ],
        },
        "127.0.0.1",
        0,
    )
    stats = GatewayStats()
    f = RelayFactory(
        reactor,
        RouteTable(snap),
        stats,
        stats.listener("127.0.0.1", 0),
        RelaySettings(),
        random.Random(1),
    )
    return int(reactor.listenTCP(0, f, interface="127.0.0.1").getHost().port)


async def run_load(
    reactor: Any, dialer: Dialer, addr: str, concurrency: int, seconds: float
) -> dict[str, Any]:
    proto = RPCClientProtocol(multi=True)
    await dialer.dial_alpn(addr, SNI_DC, SNI_NODE, ALPN_RPC_MULTIPLEX_V2, proto)
    for _ in range(200):  # warm-up
        await proto.call("Status.Ping")
    lat: list[float] = []
    done = defer.Deferred()
    deadline = time.perf_counter() + seconds
    running = [0]
    now = time.perf_counter

    def one() -> None:
        t0 = now()
        running[0] += 1

        def fin(_: Any) -> None:
            t1 = now()
            lat.append(t1 - t0)
            running[0] -= 1
            if t1 < deadline:
                one()
            elif running[0] == 0:
                done.callback(None)

        proto.call("Status.Ping").addCallback(fin)

    start = now()
    for _ in range(concurrency):
        one()
    await done
    elapsed = now() - start
    await proto.close()
    lat.sort()
    return {
        "concurrency": concurrency,
        "calls": len(lat),
        "seconds": round(elapsed, 3),
        "calls_per_s": round(len(lat) / elapsed),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 3),
    }


def serve_child(settings_json: str) -> None:
    """Child process of --split: server + relay, ports on stdout, runs until stdin closes."""
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import Protocol

    tls = TLSConfigurator(TLSSettings(**json.loads(settings_json)))
    sp = start_server(reactor, tls)
    rp = start_relay(reactor, sp)
    print(json.dumps({"server": sp, "relay": rp}), flush=True)

    class Quit(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            reactor.stop()  # type: ignore[attr-defined]

    stdio.StandardIO(Quit())
    reactor.run()  # type: ignore[attr-defined]


async def main(reactor: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    pki = PKI()
    d = Path(args.workdir)
    server_settings = pki.settings(SNI_DC, SNI_NODE, d / "server")
    client_tls = TLSConfigurator(pki.settings("secondary", "sec", d / "client"))
    child = None
    if args.split:
        fields = {k: v for k, v in attrs.asdict(server_settings).items() if not k.endswith("_pem")}
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve-child", json.dumps(fields)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        sp, rp = ports["server"], ports["relay"]
    else:
        sp = start_server(reactor, TLSConfigurator(server_settings))
        rp = start_relay(reactor, sp)
    dialer = Dialer(reactor, "secondary", server=True, tls=client_tls)
    results = []
    try:
        for path, port in (("direct", sp), ("relay", rp)):
            for c in args.concurrency:
                r = await run_load(reactor, dialer, f"127.0.0.1:{port}", c, args.seconds)
                r["path"] = path
                r["split"] = bool(args.split)
                print(json.dumps(r), flush=True)
                results.append(r)
    finally:
        if child is not None:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(10)
    return results


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", default="1,64", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--split", action="store_true")
    p.add_argument("--workdir", default=f"/tmp/wanfed-bench-rpc-{os.getpid()}")
    p.add_argument("--serve-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_child:
        serve_child(args.serve_child)
        return
    from twisted.internet import task

    task.react(lambda r: defer.ensureDeferred(main(r, args)))


if __name__ == "__main__":
    cli()

"""Benchmark: full TLS handshakes per second with wanfedtx.tls creators, in memory (iosim).

Each handshake is the native-TLS ALPN path of the :8300 port: the server side is
``TLSConfigurator.incoming_alpn_creator`` (client cert required, peer-name check, files
``stat``-ed for reloads), the client side ``outgoing_alpn_creator`` (SNI, hostname check), real
OpenSSL on both sides, ECDSA P-256 certificates from ``wanfedtx.tls.certs``. One ``ping`` echo
rides on each connection. Both sides run in this one process, so the number is the cost of BOTH
ends of a handshake on one core.

    .venv/bin/python bench/tls/bench_handshake.py [--count 300] [--files] [--tls12]

``--files`` reads the CA/cert/key from files (so every handshake also ``stat``s four files);
otherwise in-memory PEMs are used. ``--tls12`` caps the client at TLS 1.2.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

from OpenSSL import SSL

from wanfedtx.testing.pki import PKI, handshake_in_memory
from wanfedtx.tls.configurator import OutgoingCreator, TLSConfigurator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--files", action="store_true")
    ap.add_argument("--tls12", action="store_true")
    args = ap.parse_args()

    pki = PKI()
    tmp = tempfile.TemporaryDirectory()
    pri = TLSConfigurator(pki.settings("primary", "pri", tmp.name if args.files else None))
    sec = TLSConfigurator(pki.settings("secondary", "sec"))
    server = pri.incoming_alpn_creator(["consul/rpc-multi", "consul/wan-gossip/stream"])
    client: Any = sec.outgoing_alpn_creator("primary", "pri", "consul/rpc-multi")
    if args.tls12:
        ctx = sec._context(server=False, alpn_request=("consul/rpc-multi",), need_cert=False)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        assert isinstance(client, OutgoingCreator)

    handshake_in_memory(server, client)  # warm-up
    start = time.perf_counter()
    for _ in range(args.count):
        s, c = handshake_in_memory(server, client)
        assert c.data == b"ping", (s, c)
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "handshakes": args.count,
                "seconds": round(elapsed, 3),
                "handshakes_per_s": round(args.count / elapsed, 1),
                "ms_per_handshake": round(1000 * elapsed / args.count, 3),
                "files": args.files,
                "tls": "1.2" if args.tls12 else "1.3",
            }
        )
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()

"""Our serf node as a separate process (so interop tests can SIGKILL it), mirroring serfpeer.

    python gossip_pypeer.py -name py.dc1 -port 7946 [-join a/127.0.0.1:7947] [-key B64]

Prints one JSON object per line: ready, joined, member-join/-leave/-failed/-update/-reap, user.
SIGTERM: graceful serf leave, then exit.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from wanfedtx.gossip.config import PROFILES
from wanfedtx.gossip.security import Keyring
from wanfedtx.gossip.serf import Event, MemberEvent, SerfConfig, UserEvent
from wanfedtx.gossip.service import SerfService


def emit(ev: dict[str, Any]) -> None:
    ev["t"] = time.time()
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def on_event(ev: Event) -> None:
    if isinstance(ev, MemberEvent):
        for m in ev.members:
            emit({"event": ev.type, "node": m.name, "status": m.status.label(), "tags": m.tags})
    elif isinstance(ev, UserEvent):
        emit({"event": "user", "name": ev.name, "payload": ev.payload.decode(errors="replace")})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-name", required=True)
    p.add_argument("-port", type=int, default=0)
    p.add_argument("-join", default="")
    p.add_argument("-key", default="")
    p.add_argument("-tags", default="")
    p.add_argument("-profile", default="local")
    a = p.parse_args()
    ml = PROFILES[a.profile]("")
    ml.bind_addr = "127.0.0.1"
    ml.bind_port = a.port
    if a.key:
        ml.keyring = Keyring([base64.b64decode(a.key)])
    tags = dict(kv.split("=", 1) for kv in a.tags.split(",") if kv)
    svc = SerfService(
        SerfConfig(a.name, ml, tags=tags, leave_propagate_delay=0.2), reactor, on_event
    )
    svc.startService()
    emit({"event": "ready", "node": a.name, "port": svc.port})

    async def join() -> None:
        try:
            n = await svc.join(a.join.split(","))
            emit({"event": "joined", "contacted": n})
        except Exception as exc:
            emit({"event": "joined", "contacted": 0, "error": str(exc)})

    if a.join:
        Deferred.fromCoroutine(join())

    async def leave_and_exit() -> None:
        await svc.leave()
        emit({"event": "left"})
        await svc.stopService()
        emit({"event": "exit"})
        reactor.stop()  # type: ignore[attr-defined]

    signal.signal(
        signal.SIGTERM,
        lambda *_: reactor.callFromThread(  # type: ignore[attr-defined]
            lambda: Deferred.fromCoroutine(leave_and_exit())
        ),
    )
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()

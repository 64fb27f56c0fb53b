# -*- test-case-name: tests.unit.gossip.test_gossip_memberlist -*-
"""Sans-IO memberlist core: SWIM failure detection with Lifeguard, gossip, push/pull anti-entropy.

Behaviour follows hashicorp/memberlist 0.2.2: probes (direct,
indirect with nacks, TCP fallback switchable per node), suspicion whose timeout shrinks with
independent confirmations, awareness (local health) scaling probe timeouts, refutation, dead and
left, retransmit limits, push/pull with join, node names on every send, ``name/addr`` join syntax.

No sockets here: packets and streams go through an ``IGossipTransport``; time comes from an injected
``IReactorTime`` and randomness from an injected ``random.Random``. The member-state transitions
(alive, suspect, dead, refute) are a pure function, ``nodestate.transition``; the probe, gossip and
push/pull loops, suspicion timers and stream sessions still schedule on the injected clock, and
``join``/``leave``/``push_pull_node`` return Deferreds.

Modules: ``node`` (member records, delegate hooks, formulas), ``nodestate`` (the pure
alive/suspect/dead/refute transition function), ``broadcast`` (transmit-limited queue),
``lifeguard`` (awareness, suspicion timer), ``session`` (one stream exchange), ``base`` (state,
lifecycle, send path), ``packets`` (receive path, pings, acks), ``probe`` (probe/gossip/push-pull
loops), ``pushpull`` (stream dispatch and state merge), ``state`` (applies ``nodestate`` to the
member list), ``core`` (``Memberlist``, the public API).
"""

from ..wire import NodeStateType
from .broadcast import BroadcastQueue
from .core import Memberlist
from .lifeguard import Awareness, Suspicion
from .node import (
    MAX_PUSH_PULL_REQUESTS,
    PUSH_PULL_SCALE_THRESHOLD,
    Delegate,
    Node,
    NodeInfo,
    ip_bytes,
    ip_string,
    log,
    parse_join_address,
    push_pull_scale,
    retransmit_limit,
    suspicion_timeout,
)

__all__ = [
    "MAX_PUSH_PULL_REQUESTS",
    "PUSH_PULL_SCALE_THRESHOLD",
    "Awareness",
    "BroadcastQueue",
    "Delegate",
    "Memberlist",
    "Node",
    "NodeInfo",
    "NodeStateType",
    "Suspicion",
    "ip_bytes",
    "ip_string",
    "log",
    "parse_join_address",
    "push_pull_scale",
    "retransmit_limit",
    "suspicion_timeout",
]

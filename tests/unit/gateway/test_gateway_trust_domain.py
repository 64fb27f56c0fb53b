"""The gateway's trust domain from the agent's Connect CA roots (``trust_domain_from_roots``)
and the ``-trust-domain`` override."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import task

from wanfedtx.gateway.agentwatch import AgentWatcher, AgentWatchError, trust_domain_from_roots

CID = "11111111-2222-3333-4444-555555555555"


def test_trust_domain_of_roots() -> None:
    roots = {"ActiveRootID": "aa", "TrustDomain": f"{CID}.consul", "Roots": []}
    assert trust_domain_from_roots(roots) == f"{CID}.consul"
    assert trust_domain_from_roots({"TrustDomain": "", "Roots": []}) == ""


@pytest.mark.parametrize("bad", [[], "x", {"TrustDomain": 5}, {"TrustDomain": "a b.consul"},
                                 {"TrustDomain": "-x.consul"}, {"TrustDomain": "a..consul"}])
def test_bad_roots_answers(bad: Any) -> None:
    with pytest.raises(AgentWatchError, match="connect ca roots"):
        trust_domain_from_roots(bad)


def test_override_wins_and_roots_fill_in() -> None:
    clock: Any = task.Clock()
    seen: list[Any] = []
    plain = AgentWatcher(clock, "http://127.0.0.1:1", "gw", seen.append)
    assert plain.trust_domain == "" and plain.trust_domain_override is None
    plain._set_trust_domain(f"{CID}.consul")
    assert plain.trust_domain == f"{CID}.consul"
    forced = AgentWatcher(clock, "http://127.0.0.1:1", "gw", seen.append, trust_domain="t.consul")
    forced._set_trust_domain(f"{CID}.consul")
    assert forced.trust_domain == "t.consul"
    assert seen == []  # no registration yet: no snapshot inputs

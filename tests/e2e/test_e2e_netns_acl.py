"""Two datacenters with ACLs on (``default_policy = "deny"``), each in its own network
namespace where only the gateway ports cross between sites (the fixture of
test_e2e_netns_case_wanfed_gw.py).

The ``wanfed demo -acl`` setup (bootstrap in the primary, replication, agent and least-privilege
gateway tokens) must pass every check of the case and of the ACLs. Then:

* a token created in the primary reaches the secondary through ACL replication (polled against
  ``/v1/acl/replication``'s ``ReplicatedTokenIndex``, normally within one replication interval)
  and works there;
* replication is paused (``PUT /v1/agent/token/replication`` with an empty token on the
  secondary) and a second token is created in the primary: the secondary resolves it by asking
  the primary and caches it (``token_ttl``/``policy_ttl`` of 2s here);
* with the primary's gateway stopped, the secondary cannot reach the primary: the replicated
  token keeps working, the cached one too once its cache entries expired (``extend-cache``: the
  failed lookup is logged and the expired entry used), an unknown token is denied (nothing
  cached: ``default_policy``), and once replication is resumed ``/v1/acl/replication`` shows
  the lag (``LastSuccess`` stays behind) and the error (``LastError`` after it, with its
  message).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_e2e_netns_case_wanfed_gw import _dropped, sites  # noqa: F401  (the fixture)

from wanfedtx.cli.demo import DCS, NODES, Federation, poll_until
from wanfedtx.cli.demo_acl import DemoACL, call

pytestmark = pytest.mark.integration


def _logs(root: Path) -> str:
    return "\n".join(
        f"== {dc}/{name}\n" + (root / dc / f"{name}.log").read_text(errors="replace")[-3000:]
        for dc in DCS
        for name in ("agent", "gateway")
    )


def test_acl_across_datacenters_and_primary_outage(
    sites: dict[str, object],  # noqa: F811
    tmp_path: Path,
) -> None:
    ip, nft = sites["ip"], sites["nft"]
    ns: dict[str, str] = sites["ns"]  # type: ignore[assignment]
    addrs: dict[str, str] = sites["addrs"]  # type: ignore[assignment]
    prefix = {dc: [str(ip), "netns", "exec", ns[dc]] for dc in DCS}
    acl = DemoACL({dc: NODES[dc] for dc in DCS}, extra=('token_ttl = "2s"', 'policy_ttl = "2s"'))
    fed = Federation(tmp_path, addrs, prefix, acl=acl)
    lines: list[str] = []
    try:
        fed.start(lines.append)
        alive = lambda: all(p.poll() is None for p in fed.procs)  # noqa: E731
        booted = acl.bootstrap(fed.http["primary"], poll_until, 120, lines.append, alive)
        assert booted, "\n".join(lines) + _logs(tmp_path)
        assert fed.wait(180), "checks failed:\n" + _logs(tmp_path)
        primary, secondary, root = fed.http["primary"], fed.http["secondary"], acl.management

        # a token created in the primary, replicated to the secondary
        rules = 'key_prefix "e2e/" { policy = "write" }'
        code, _ = call(f"{primary}/v1/acl/policy", "PUT", root, {"Name": "e2e", "Rules": rules})
        assert code == 200
        code, token = call(f"{primary}/v1/acl/token", "PUT", root, {"Policies": [{"Name": "e2e"}]})
        assert code == 200
        secret, created = token["SecretID"], int(token["CreateIndex"])
        start = time.monotonic()

        def status() -> dict[str, Any]:
            code, body = call(f"{secondary}/v1/acl/replication", token=root)
            return body if code == 200 and isinstance(body, dict) else {}

        def replicated() -> bool:
            return int(status().get("ReplicatedTokenIndex") or 0) >= created

        assert poll_until(replicated, 30, 0.1), status()
        took = time.monotonic() - start
        assert call(f"{secondary}/v1/kv/e2e/a", "PUT", secret, "1")[0] == 200, took
        assert call(f"{secondary}/v1/kv/other", "PUT", secret, "1")[0] == 403
        before = status()
        assert (
            before["Running"]
            and before["LastSuccess"]
            and before["SourceDatacenter"] == ("primary")
        ), before

        # replication paused; a token the secondary can only know by asking the primary
        pause = call(f"{secondary}/v1/agent/token/replication", "PUT", root, {"Token": ""})
        assert pause[0] == 200, pause
        assert poll_until(lambda: status().get("Running") is False, 30, 0.2), status()
        code, late = call(f"{primary}/v1/acl/token", "PUT", root, {"Policies": [{"Name": "e2e"}]})
        assert code == 200
        assert int(status().get("ReplicatedTokenIndex") or 0) < int(late["CreateIndex"])
        cached = late["SecretID"]
        assert call(f"{secondary}/v1/kv/e2e/b", "PUT", cached, "1")[0] == 200  # remote, cached

        # the primary's gateway goes away: the secondary cannot reach the primary any more
        gateway = fed.procs[len(DCS)]  # the gateways follow the servers, the primary's first
        gateway.terminate()
        gateway.wait(timeout=30)
        assert call(f"{secondary}/v1/kv/e2e/c", "PUT", secret, "1")[0] == 200  # replicated
        log = tmp_path / "secondary" / "agent.log"
        marker = "Error communicating with the ACL Datacenter"
        seen = log.read_text(errors="replace").count(marker)
        answers: list[int] = []

        def extended() -> bool:
            # the cached token, until its expired entry was used after a failed lookup
            answers.append(call(f"{secondary}/v1/kv/e2e/d", "PUT", cached, "1")[0])
            return log.read_text(errors="replace").count(marker) > seen

        assert poll_until(extended, 60, 0.5), answers
        assert set(answers) == {200}, answers
        unknown = str(uuid.uuid4())
        code, body = call(f"{secondary}/v1/kv/e2e/e", "PUT", unknown, "1")
        assert code == 403, body
        # replication resumed: its rounds now fail
        resume = call(
            f"{secondary}/v1/agent/token/replication", "PUT", root, {"Token": acl.replication}
        )
        assert resume[0] == 200, resume

        def failing() -> bool:
            s = status()
            return bool(s.get("LastError")) and str(s["LastError"]) > str(s["LastSuccess"])

        assert poll_until(failing, 90, 0.5), status()
        after = status()
        assert after["LastErrorMessage"], after
        print(f"replicated in {took:.2f}s; status after the outage: {json.dumps(after)}")
        # what was written, was written by the allowed requests only
        code, keys = call(f"{secondary}/v1/kv/e2e/?keys", token=root)
        assert code == 200 and sorted(keys) == ["e2e/a", "e2e/b", "e2e/c", "e2e/d"], keys
    finally:
        fed.stop()
    for dc in DCS:
        assert _dropped(ip, nft, ns[dc]) == 0, f"{dc}: something went around the gateways"

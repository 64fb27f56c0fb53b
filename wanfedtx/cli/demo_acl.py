# -*- test-case-name: tests.e2e.test_e2e_demo_acl -*-
"""``wanfed demo -acl``: the two-datacenter demo with ACLs on and ``default_policy = "deny"``.

Before the processes start, the demo picks the secrets of the tokens it will need and writes
them into the configuration (Consul lets a token be created with a chosen ``SecretID``):

* every server: ``acl { enabled, default_policy = "deny", down_policy = "extend-cache",
  enable_token_persistence }`` and ``tokens.agent`` (its own token: ``node "<node>"`` write,
  ``node_prefix ""`` and ``service_prefix ""`` read);
* the secondary: ``tokens.replication`` (``acl = "write"``, ``operator = "write"``,
  ``service_prefix ""`` and ``node_prefix ""`` read: ACL and federation-state replication);
* each mesh gateway: its least-privilege token, given to its registration (``token``) and to
  ``wanfed gateway -token``: ``service "mesh-gateway"`` write, ``node_prefix ""`` and
  ``service_prefix ""`` read, and ``agent "<node>"`` read (the gateway reads
  ``/v1/agent/self``).

Once the primary has a leader, the demo bootstraps ACLs there (``PUT /v1/acl/bootstrap``: the
management token), writes the policies and tokens through the API, and the processes that
were retrying with not-yet-existing tokens converge. The demo's own checks then send the
management token; four more checks show the ACLs at work: a KV write without a token is
refused in each datacenter, the secondary replicates the primary's ACLs
(``/v1/acl/replication``), and a token created in the primary after the start works in the
secondary.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wanfedtx.cli.demo import Checks

NODE_RULES = """node "{node}" {{ policy = "write" }}
node_prefix "" {{ policy = "read" }}
service_prefix "" {{ policy = "read" }}
"""
REPLICATION_RULES = """acl = "write"
operator = "write"
node_prefix "" { policy = "read" }
service_prefix "" { policy = "read" }
"""
GATEWAY_RULES = """service "mesh-gateway" {{ policy = "write" }}
node_prefix "" {{ policy = "read" }}
service_prefix "" {{ policy = "read" }}
agent "{node}" {{ policy = "read" }}
"""


def call(url: str, method: str = "GET", token: str = "", body: Any = None) -> tuple[int, Any]:
    """One request with ``X-Consul-Token`` (none when ``token`` is empty): status, JSON or text."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("X-Consul-Token", token)
    opener = urllib.request.build_opener()  # no token unless given
    try:
        with opener.open(req, timeout=10) as r:
            raw = r.read()
            status = int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode("utf-8", "replace")
    except OSError as e:
        return 0, str(e)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


class TokenHeader(urllib.request.BaseHandler):
    """Adds ``X-Consul-Token`` to the demo's own requests (its checks)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def http_request(self, req: urllib.request.Request) -> urllib.request.Request:
        if not req.has_header("X-consul-token"):
            req.add_header("X-Consul-Token", self.token)
        return req


class _Exited(Exception):
    """A demo process exited while the demo waited to bootstrap."""


class DemoACL:
    """The demo's ACL setup (see the module docstring) for datacenters ``nodes`` (dc -> node
    name; the primary first)."""

    def __init__(self, nodes: dict[str, str], extra: tuple[str, ...] = ()) -> None:
        #: more lines for every server's ``acl { }`` block (tests: short cache TTLs)
        self.extra = extra
        self.nodes = nodes
        self.dcs = tuple(nodes)
        self.primary = self.dcs[0]
        self.agent = {dc: str(uuid.uuid4()) for dc in self.dcs}
        self.gateway = {dc: str(uuid.uuid4()) for dc in self.dcs}
        self.replication = str(uuid.uuid4())
        #: the bootstrap (management) token, once ``bootstrap`` ran
        self.management = ""

    # -- files ---------------------------------------------------------------------------------

    def write_config(self, conf: Path, dc: str) -> None:
        """``acl.hcl`` beside the server's config; the gateway registration gets its token."""
        tokens = [f'    agent = "{self.agent[dc]}"']
        if dc != self.primary:
            tokens.append(f'    replication = "{self.replication}"')
        (conf / "acl.hcl").write_text(
            "acl {\n"
            "  enabled = true\n"
            '  default_policy = "deny"\n'
            '  down_policy = "extend-cache"\n'
            "  enable_token_persistence = true\n"
            + "".join(f"  {line}\n" for line in self.extra)
            + "  tokens {\n"
            + "\n".join(tokens)
            + "\n  }\n"
            "}\n"
        )
        gateway = conf / "gateway.hcl"
        text = gateway.read_text()
        gateway.write_text(
            text.replace("services {\n", f'services {{\n  token = "{self.gateway[dc]}"\n', 1)
        )

    def gateway_args(self, dc: str) -> list[str]:
        return ["-token", self.gateway[dc]]

    # -- bootstrap -------------------------------------------------------------------------------

    def bootstrap(
        self,
        primary_http: str,
        poll: Callable[[Callable[[], bool], float], bool],
        timeout: float,
        say: Callable[[str], object] = print,
        alive: Callable[[], bool] = lambda: True,
    ) -> bool:
        """Bootstrap the primary and write the policies and tokens; False if it did not work
        within ``timeout`` (the reason is said)."""
        last: list[Any] = [None]

        def boot() -> bool:
            if not alive():
                raise _Exited()
            code, body = call(f"{primary_http}/v1/acl/bootstrap", "PUT", body={})
            last[0] = (code, body)
            if code == 200 and isinstance(body, dict):
                self.management = str(body.get("SecretID") or "")
                return bool(self.management)
            return False

        try:
            booted = poll(boot, timeout)
        except _Exited:
            say("  FAIL ACL bootstrap in the primary: a demo process exited")
            return False
        if not booted:
            say(f"  FAIL ACL bootstrap in the primary: {last[0]}")
            return False
        say(f"  ACLs bootstrapped; management token (SecretID): {self.management}")
        policies = {
            "acl-replication": (REPLICATION_RULES, self.replication, "ACL replication"),
        }
        for dc, node in self.nodes.items():
            policies[f"agent-{dc}"] = (
                NODE_RULES.format(node=node),
                self.agent[dc],
                f"agent token of {node}",
            )
            policies[f"mesh-gateway-{dc}"] = (
                GATEWAY_RULES.format(node=node),
                self.gateway[dc],
                f"mesh gateway of {dc}",
            )
        for name, (rules, secret, what) in policies.items():
            code, body = call(
                f"{primary_http}/v1/acl/policy",
                "PUT",
                self.management,
                {"Name": name, "Rules": rules},
            )
            if code != 200:
                say(f"  FAIL writing ACL policy {name}: {code} {body}")
                return False
            code, body = call(
                f"{primary_http}/v1/acl/token",
                "PUT",
                self.management,
                {"SecretID": secret, "Description": what, "Policies": [{"Name": name}]},
            )
            if code != 200:
                say(f"  FAIL writing the token for {what}: {code} {body}")
                return False
            say(f"  wrote policy {name} and its token ({what})")
        # from here on, the demo's own requests carry the management token
        from wanfedtx.cli.demo import DEMO_HTTP

        DEMO_HTTP.use_token(self.management)
        return True

    # -- checks ----------------------------------------------------------------------------------

    def checks(self, http: dict[str, str]) -> list[tuple[str, Callable[[], bool]]]:
        """The ACL checks, appended to the case's."""
        out: list[tuple[str, Callable[[], bool]]] = []
        for dc in self.dcs:

            def anonymous_refused(url: str = http[dc]) -> bool:
                return call(f"{url}/v1/kv/acl-demo-anonymous", "PUT", body="x")[0] == 403

            out.append((f"{dc}: a KV write without a token is refused (403)", anonymous_refused))
        primary = http[self.primary]
        created: dict[str, str] = {}
        for dc in self.dcs[1:]:
            url = http[dc]

            def replicated(url: str = url) -> bool:
                code, status = call(f"{url}/v1/acl/replication", token=self.management)
                return (
                    code == 200
                    and isinstance(status, dict)
                    and bool(status.get("LastSuccess"))
                    and int(status.get("ReplicatedIndex") or 0) > 0
                )

            def new_token_works(url: str = url, dc: str = dc) -> bool:
                name = f"demo-kv-{dc}"
                if name not in created:
                    rules = 'key_prefix "demo/" { policy = "write" }'
                    policy = {"Name": name, "Rules": rules}
                    if call(f"{primary}/v1/acl/policy", "PUT", self.management, policy)[0] != 200:
                        return False
                    created[name] = ""
                if dc not in created:
                    link = {"Policies": [{"Name": name}]}
                    code, tok = call(f"{primary}/v1/acl/token", "PUT", self.management, link)
                    if code != 200 or not isinstance(tok, dict):
                        return False
                    created[dc] = str(tok["SecretID"])
                ok = call(f"{url}/v1/kv/demo/{dc}", "PUT", created[dc], "1")[0] == 200
                refused = call(f"{url}/v1/kv/other/{dc}", "PUT", created[dc], "1")[0] == 403
                return ok and refused

            out.append((f"{dc}: replicates the primary's ACLs (/v1/acl/replication)", replicated))
            out.append(
                (
                    f"{dc}: a token created in the primary works here (key_prefix demo/)",
                    new_token_works,
                )
            )
        return out


def with_acl_checks(checks: Checks, acl: DemoACL) -> Checks:
    """``checks`` with the ACL checks after the case's."""
    base = checks.all

    def everything() -> list[tuple[str, Callable[[], bool]]]:
        return [*base(), *acl.checks(checks.http)]

    checks.all = everything  # type: ignore[method-assign]
    return checks

"""A real ACL agent for integration tests: ``wanfed agent -dev -data-dir`` with raft on and
``acl { enabled = true, default_policy = "deny" }`` (plus whatever else the test's config says),
an HTTP helper that returns status, headers and body, and the bootstrap of the management token.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from netutil import free_port

from wanfedtx.cli.demo import poll_until

BIN = Path(sys.executable).parent
ACL_CONFIG = 'acl {\n  enabled = true\n  default_policy = "deny"\n}\n'


class ACLAgent:
    """One ``wanfed agent -dev`` process with the config in ``tmp/acl.hcl``."""

    def __init__(self, tmp: Path, config: str = ACL_CONFIG,
                 ports: list[int] | None = None) -> None:
        self.tmp = tmp
        (tmp / "acl.hcl").write_text(config)
        # HTTP, serf LAN, serf WAN, RPC: the same ones after a restart (raft keeps addresses)
        self.ports = ports or [free_port() for _ in range(4)]
        self.addr = f"127.0.0.1:{self.ports[0]}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> ACLAgent:
        http, lan, wan, server = (str(p) for p in self.ports)
        self.proc = proc = subprocess.Popen(
            [str(BIN / "wanfed"), "agent", "-dev", "-data-dir", str(self.tmp / "data"),
             "-node", "n1", "-config-file", str(self.tmp / "acl.hcl"), "-http-port", http,
             "-serf-lan-port", lan, "-serf-wan-port", wan, "-server-port", server],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.tmp,
        )

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"agent exited {proc.returncode}: {proc.communicate()}")
            try:
                # a leader, and it initialized ACLs: the policy list is refused
                if self.http("GET", "/v1/status/leader")[2] in (b'""', b""):
                    return False
                return self.http("GET", "/v1/acl/policies")[0] == 403
            except OSError:
                return False

        assert poll_until(ready, 60), "no leader with ACLs"
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()

    def http(
        self, method: str, path: str, token: str = "", body: Any = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"http://{self.addr}{path}", data=data, method=method)
        if token:
            req.add_header("X-Consul-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    def bootstrap(self) -> str:
        """``PUT /v1/acl/bootstrap`` once (a second one is refused): the management secret."""
        code, _, body = self.http("PUT", "/v1/acl/bootstrap")
        assert code == 200, body
        tok = json.loads(body)
        assert tok["ID"] == tok["SecretID"]
        assert tok["Description"] == "Bootstrap Token (Global Management)"
        again = self.http("PUT", "/v1/acl/bootstrap")
        assert again[0] == 403
        assert again[2].startswith(b"Permission denied: ACL bootstrap no longer")
        return str(tok["SecretID"])

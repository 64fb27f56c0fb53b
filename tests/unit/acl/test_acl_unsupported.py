"""What the issue leaves out (roles, service/node identities, auth methods, legacy tokens) is
refused with one line, never silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from acl_support import MASTER, Net
from test_acl_http import call, started

from wanfedtx.acl.model import ACLError
from wanfedtx.config.acl import ROLE_TTL_IGNORED
from wanfedtx.config.builder import LoadOptions, load


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Roles", [{"Name": "r"}]),
        ("ServiceIdentities", [{"ServiceName": "web"}]),
        ("NodeIdentities", [{"NodeName": "n", "Datacenter": "dc1"}]),
        ("AuthMethod", "kube"),
    ],
)
def test_token_fields_of_unsupported_features_are_refused(field: str, value: object) -> None:
    net = started(initial_management=MASTER)
    before = net.servers["dc1"].fsm.state.acl_token_list(None)[1]
    code, body, _ = call(net, "PUT", "/v1/acl/token", MASTER, {field: value})
    assert code == 400 and body.endswith(b"are not supported: link policies instead"), body
    assert b"\n" not in body
    assert net.servers["dc1"].fsm.state.acl_token_list(None)[1] == before
    with pytest.raises(ACLError, match="not supported"):
        net.rpc("dc1", "ACL.TokenSet", {"Token": MASTER, "ACLToken": {field: value}})


def test_empty_lists_are_fine() -> None:
    net: Net = started(initial_management=MASTER)
    code, body, _ = call(
        net, "PUT", "/v1/acl/token", MASTER, {"Roles": [], "ServiceIdentities": []}
    )
    assert code == 200, body


@pytest.mark.parametrize(
    ("method", "path", "what"),
    [
        ("PUT", "/v1/acl/role", b"ACL roles"),
        ("GET", "/v1/acl/roles", b"ACL roles"),
        ("GET", "/v1/acl/role/name/x", b"ACL roles"),
        ("PUT", "/v1/acl/auth-method", b"ACL auth methods"),
        ("POST", "/v1/acl/login", b"ACL auth methods"),
        ("GET", "/v1/acl/binding-rules", b"ACL binding rules"),
        ("PUT", "/v1/acl/create", b"Legacy ACL tokens"),
    ],
)
def test_unsupported_api_families_answer_one_line(method: str, path: str, what: bytes) -> None:
    net = started(initial_management=MASTER)
    code, body, _ = call(net, method, path, MASTER, {})
    assert (code, body) == (404, what + b" are not supported by this server")


def test_unknown_acl_paths_stay_404_page_not_found() -> None:
    net = started(initial_management=MASTER)
    assert call(net, "GET", "/v1/acl/nonsense", MASTER)[:2] == (404, b"404 page not found")


def test_role_ttl_set_by_the_operator_is_warned_about(tmp_path: Path) -> None:
    def warnings(text: str) -> tuple[str, ...]:
        (tmp_path / "a.hcl").write_text(text)
        flags = {"data_dir": str(tmp_path / "d"), "server": True, "bind_addr": "127.0.0.1"}
        opts = LoadOptions(
            config_files=[str(tmp_path / "a.hcl")], flags=flags, hostname=lambda: "h"
        )
        return load(opts).warnings

    assert ROLE_TTL_IGNORED in warnings('acl { enabled = true\n role_ttl = "10s" }\n')
    assert ROLE_TTL_IGNORED not in warnings("acl { enabled = true }\n")

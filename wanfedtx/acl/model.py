# -*- test-case-name: tests.unit.acl.test_acl_model -*-
"""ACL policies and tokens as stored and served: builtin IDs, validation with Consul's messages,
the content hash, and raft type 11/17-20 handlers (``install``).

Shapes are the HTTP API's: a policy ``{ID, Name, Description, Rules, Datacenters, Hash}``, a
token ``{AccessorID, SecretID, Description, Policies: [{ID, Name}], Local, ExpirationTime?,
CreateTime, Hash}``; the store keeps only policy IDs in a token's links (a policy can be
renamed) and responses fill in the current name.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from typing import Any

from wanfedtx.acl.rules import parse_rules
from wanfedtx.fsm.commands import MessageType
from wanfedtx.fsm.errors import FSMError
from wanfedtx.fsm.machine import FSM

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
GLOBAL_MANAGEMENT_NAME = "global-management"
GLOBAL_MANAGEMENT_DESCRIPTION = "Builtin Policy that grants unlimited access"
GLOBAL_MANAGEMENT_RULES = """
acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}"""
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET = "anonymous"
ANONYMOUS_DESCRIPTION = "Anonymous Token"
RESERVED_PREFIX = "00000000-0000-0000-0000-0000000000"
BOOTSTRAP_DESCRIPTION = "Bootstrap Token (Global Management)"
MASTER_DESCRIPTION = "Master Token"
HIDDEN = "<hidden>"
ROOT_NAMES = ("allow", "deny", "manage")

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_POLICY_NAME_RE = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")


class ACLError(ValueError):
    """A refused ACL request; the text is Consul's, the HTTP layer maps it (400 or 403)."""


class PermissionDeniedError(ACLError):
    """``Permission denied`` (HTTP 403)."""

    def __init__(self, cause: str = "") -> None:
        super().__init__(f"Permission denied: {cause}" if cause else "Permission denied")


class ACLNotFoundError(ACLError):
    """``ACL not found`` (HTTP 403)."""

    def __init__(self) -> None:
        super().__init__("ACL not found")


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and bool(_UUID_RE.match(value))


def new_uuid() -> str:
    return str(uuid.uuid4())


def _hash(parts: list[str]) -> str:
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return base64.b64encode(h.digest()).decode()


def policy_hash(p: dict[str, Any]) -> str:
    return _hash([p["Name"], p["Description"], p["Rules"], *p["Datacenters"]])


def token_hash(t: dict[str, Any]) -> str:
    links = [link["ID"] for link in t["Policies"]]
    return _hash([t["Description"], str(t["Local"]), *links])


def global_management_policy() -> dict[str, Any]:
    p = {
        "ID": GLOBAL_MANAGEMENT_ID,
        "Name": GLOBAL_MANAGEMENT_NAME,
        "Description": GLOBAL_MANAGEMENT_DESCRIPTION,
        "Rules": GLOBAL_MANAGEMENT_RULES,
        "Datacenters": [],
    }
    p["Hash"] = policy_hash(p)
    return p


def make_token(
    accessor: str,
    secret: str,
    description: str,
    policy_ids: list[str],
    create_time: str,
    local: bool = False,
    expiration: str | None = None,
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "AccessorID": accessor,
        "SecretID": secret,
        "Description": description,
        "Policies": [{"ID": i} for i in policy_ids],
        "Local": local,
        "CreateTime": create_time,
    }
    if expiration:
        t["ExpirationTime"] = expiration
    t["Hash"] = token_hash(t)
    return t


def anonymous_token(create_time: str) -> dict[str, Any]:
    return make_token(ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, ANONYMOUS_DESCRIPTION, [], create_time)


def validate_policy(body: Any, known_datacenters: list[str] | None = None) -> dict[str, Any]:
    """A policy write body -> the row to store (without ID); ``ACLError`` with Consul's text."""
    if not isinstance(body, dict):
        raise ACLError("Request decode failed: the policy must be a JSON object")
    name = body.get("Name") or ""
    if not isinstance(name, str) or name == "":
        raise ACLError("Invalid Policy: no Name is set")
    if not _POLICY_NAME_RE.match(name):
        raise ACLError(
            "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
        )
    description = body.get("Description") or ""
    rules = body.get("Rules") or ""
    dcs = body.get("Datacenters") or []
    if not isinstance(description, str) or not isinstance(rules, str):
        raise ACLError("Request decode failed: Description and Rules must be strings")
    if not isinstance(dcs, list) or not all(isinstance(d, str) for d in dcs):
        raise ACLError("Request decode failed: Datacenters must be a list of strings")
    parse_rules(rules)  # RulesError (a ValueError) goes back to the caller as it is
    if known_datacenters is not None:
        for dc in dcs:
            if dc not in known_datacenters:
                raise ACLError(f'Invalid Policy: unknown datacenter "{dc}"')
    return {"Name": name, "Description": description, "Rules": rules, "Datacenters": list(dcs)}


# -- raft ------------------------------------------------------------------------------------


def install(fsm: FSM) -> None:
    """Let ``fsm`` apply ACL bootstrap (11), token set/delete (17/18), policy set/delete (19/20)."""
    state = fsm.state

    def bootstrap(index: int, req: Any) -> Any:
        if state.acl_bootstrap_index() and not req.get("Reset"):
            return FSMError("ACL bootstrap no longer allowed")
        state.acl_bootstrap(index, dict(req["Token"]))
        return True

    def token_set(index: int, req: Any) -> Any:
        state.acl_token_batch_set(index, list(req["Tokens"]))
        return True

    def token_delete(index: int, req: Any) -> Any:
        state.acl_token_batch_delete(index, list(req["TokenIDs"]))
        return True

    def policy_set(index: int, req: Any) -> Any:
        state.acl_policy_batch_set(index, list(req["Policies"]))
        return True

    def policy_delete(index: int, req: Any) -> Any:
        state.acl_policy_batch_delete(index, list(req["PolicyIDs"]))
        return True

    fsm.register_handler(MessageType.ACL_BOOTSTRAP, bootstrap)
    fsm.register_handler(MessageType.ACL_TOKEN_SET, token_set)
    fsm.register_handler(MessageType.ACL_TOKEN_DELETE, token_delete)
    fsm.register_handler(MessageType.ACL_POLICY_SET, policy_set)
    fsm.register_handler(MessageType.ACL_POLICY_DELETE, policy_delete)

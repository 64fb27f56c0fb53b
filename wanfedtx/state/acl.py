# -*- test-case-name: tests.unit.acl.test_acl_state -*-
"""The ACL tables: ``acl-policies`` (by ID, unique Name), ``acl-tokens`` (by AccessorID, unique
SecretID) and ``acl-bootstrap`` (the one row remembering that bootstrap was done and at which
raft index, Consul's ``acl-token-bootstrap`` index entry).

Rows are the shapes served by the HTTP API (``ID``, ``Name``, ``Description``, ``Rules``,
``Datacenters``, ``Hash``; ``AccessorID``, ``SecretID``, ``Description``, ``Policies`` as
``[{"ID"}]`` links, ``Local``, ``ExpirationTime``, ``CreateTime``, ``Hash``), plus
``CreateIndex``/``ModifyIndex`` set here from the raft index. Validation happens before raft
(``wanfedtx.acl``); the store only keeps CreateIndex across updates.
"""

from __future__ import annotations

from typing import Any

from wanfedtx.state.base import StoreBase, register_schema
from wanfedtx.state.table import IndexSpec, Row, TableSchema
from wanfedtx.state.watch import WatchSet

ACL_POLICIES = "acl-policies"
ACL_TOKENS = "acl-tokens"
ACL_BOOTSTRAP = "acl-bootstrap"

register_schema(
    TableSchema(
        name=ACL_POLICIES,
        primary=lambda r: str(r["ID"]),
        indexes=(IndexSpec("name", lambda r: str(r["Name"]).lower()),),
    )
)
register_schema(
    TableSchema(
        name=ACL_TOKENS,
        primary=lambda r: str(r["AccessorID"]),
        indexes=(IndexSpec("secret", lambda r: str(r["SecretID"])),),
    )
)
register_schema(TableSchema(name=ACL_BOOTSTRAP, primary=lambda r: "bootstrap"))


class ACLStore(StoreBase):
    """Reads and writes of the ACL tables."""

    # -- writes --------------------------------------------------------------------------------

    def acl_policy_batch_set(self, idx: int, policies: list[dict[str, Any]]) -> None:
        with self.write():
            table = self.tables[ACL_POLICIES]
            for policy in policies:
                existing = table.get(str(policy["ID"]))
                row = dict(policy)
                row["CreateIndex"] = existing["CreateIndex"] if existing is not None else idx
                row["ModifyIndex"] = idx
                self.insert(ACL_POLICIES, row)
            self.bump_index(ACL_POLICIES, idx)

    def acl_policy_batch_delete(self, idx: int, ids: list[str]) -> None:
        with self.write():
            if [i for i in ids if self.delete(ACL_POLICIES, i) is not None]:
                self.bump_index(ACL_POLICIES, idx)

    def acl_token_batch_set(self, idx: int, tokens: list[dict[str, Any]]) -> None:
        with self.write():
            table = self.tables[ACL_TOKENS]
            for token in tokens:
                existing = table.get(str(token["AccessorID"]))
                row = dict(token)
                row["CreateIndex"] = existing["CreateIndex"] if existing is not None else idx
                row["ModifyIndex"] = idx
                self.insert(ACL_TOKENS, row)
            self.bump_index(ACL_TOKENS, idx)

    def acl_token_batch_delete(self, idx: int, accessors: list[str]) -> None:
        with self.write():
            if [a for a in accessors if self.delete(ACL_TOKENS, a) is not None]:
                self.bump_index(ACL_TOKENS, idx)

    def acl_bootstrap(self, idx: int, token: dict[str, Any]) -> None:
        """Record the bootstrap at ``idx`` and store its token."""
        with self.write():
            self.insert(ACL_BOOTSTRAP, {"Index": idx})
            self.bump_index(ACL_BOOTSTRAP, idx)
        self.acl_token_batch_set(idx, [token])

    # -- reads ---------------------------------------------------------------------------------

    def acl_bootstrap_index(self) -> int:
        """The raft index of the bootstrap, 0 while bootstrap is still allowed."""
        row = self.tables[ACL_BOOTSTRAP].get("bootstrap")
        return int(row["Index"]) if row is not None else 0

    def acl_policy_get(self, ws: WatchSet | None, policy_id: str) -> tuple[int, Row | None]:
        return self.max_index(ACL_POLICIES), self.tables[ACL_POLICIES].get(policy_id, ws)

    def acl_policy_get_by_name(self, ws: WatchSet | None, name: str) -> tuple[int, Row | None]:
        rows = self.tables[ACL_POLICIES].lookup("name", name.lower(), ws)
        return self.max_index(ACL_POLICIES), (rows[0] if rows else None)

    def acl_policy_list(self, ws: WatchSet | None) -> tuple[int, list[Row]]:
        rows = sorted(self.tables[ACL_POLICIES].all(ws), key=lambda r: str(r["ID"]))
        return self.max_index(ACL_POLICIES), rows

    def acl_token_get(self, ws: WatchSet | None, accessor: str) -> tuple[int, Row | None]:
        return self.max_index(ACL_TOKENS), self.tables[ACL_TOKENS].get(accessor, ws)

    def acl_token_get_by_secret(self, ws: WatchSet | None, secret: str) -> tuple[int, Row | None]:
        rows = self.tables[ACL_TOKENS].lookup("secret", secret, ws)
        return self.max_index(ACL_TOKENS), (rows[0] if rows else None)

    def acl_token_list(
        self, ws: WatchSet | None, *, local: bool = True, global_: bool = True
    ) -> tuple[int, list[Row]]:
        rows = [
            r
            for r in self.tables[ACL_TOKENS].all(ws)
            if (local and r.get("Local")) or (global_ and not r.get("Local"))
        ]
        rows.sort(key=lambda r: str(r["AccessorID"]))
        return self.max_index(ACL_TOKENS), rows

# -*- test-case-name: tests.unit.agent.test_agent_ae_model,tests.unit.agent.test_agent_local_ae -*-
"""Service and check definitions, as written in config files (``services {}``) or sent to
``/v1/agent/service/register``, decoded into the agent's local service and check records: a
``ServiceRegistration`` (NodeService row + checks) and ``wanfedtx.config.runtime.CheckDefinition``
(the one check definition type, validated here).

Keys match case-insensitively and snake_case is accepted (``enable_tag_override``), so HCL config
blocks and JSON bodies share this decoder. Supported check kinds: TTL, TCP and HTTP; script,
docker and gRPC checks are refused with a message saying so.
"""

from __future__ import annotations

from typing import Any

import attrs

from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.catalog.structs import SERVICE_KINDS, Fields, node_service_row
from wanfedtx.config.durations import parse_duration
from wanfedtx.config.runtime import CheckDefinition
from wanfedtx.state.errors import InvalidMetadataError
from wanfedtx.state.validate import KIND_MESH_GATEWAY, validate_service_meta


def _duration(f: Fields, name: str) -> float:
    """A duration given as a Go string ("10s") or as nanoseconds."""
    value = f.raw(name)
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        raise BadRequestError(f'{f.where}: field {name!r} must be a duration like "10s"')
    if isinstance(value, int | float):
        return float(value) * 1e-9
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = -1.0
        if seconds < 0:
            raise BadRequestError(f"{f.where}: field {name!r}: invalid duration {value!r}")
        return seconds
    raise BadRequestError(f'{f.where}: field {name!r} must be a duration like "10s"')


class _SnakeFields(Fields):
    """``Fields`` that also accepts snake_case spellings (``service_id`` for ``ServiceID``)."""

    def raw(self, name: str) -> Any:
        value = super().raw(name)
        if value is None:
            snake = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
            snake = snake.replace("i_d", "id").replace("t_t_l", "ttl").replace("h_t_t_p", "http")
            snake = snake.replace("t_c_p", "tcp").replace("t_l_s", "tls")
            value = super().raw(snake)
        return value


def check_kind(check: CheckDefinition) -> str:
    """``ttl``, ``tcp`` or ``http``: the kinds of check this agent runs."""
    if check.ttl:
        return "ttl"
    if check.tcp:
        return "tcp"
    return "http"


def health_check(check: CheckDefinition, node: str, output: str = "") -> dict[str, Any]:
    """The HealthCheck row a decoded check starts as."""
    return {
        "Node": node,
        "CheckID": check.id,
        "Name": check.name,
        "Status": check.status,
        "Notes": check.notes,
        "Output": output,
        "ServiceID": check.service_id,
        "ServiceName": "",
        "ServiceTags": [],
        "Type": check_kind(check),
        "Definition": {},
    }


def decode_check(
    obj: Any,
    where: str = "Check",
    service_id: str = "",
    default_id: str = "",
    default_name: str = "",
) -> CheckDefinition:
    f = _SnakeFields(obj, where)
    for unsupported in (
        "ScriptArgs",
        "Args",
        "DockerContainerID",
        "GRPC",
        "AliasNode",
        "AliasService",
        "H2PING",
    ):
        if f.raw(unsupported):
            raise BadRequestError(
                f"{where}: {unsupported} checks are not supported by this agent "
                "(use TTL, TCP or HTTP checks)"
            )
    ttl = _duration(f, "TTL")
    interval = _duration(f, "Interval")
    tcp = f.text("TCP")
    http = f.text("HTTP")
    if interval > 0 and ttl > 0:
        raise BadRequestError("Interval and TTL cannot both be specified")
    if (tcp or http) and interval <= 0:
        raise BadRequestError("Interval must be > 0 for Script, HTTP, or TCP checks")
    if not (tcp or http) and ttl <= 0:
        raise BadRequestError("TTL must be > 0 for TTL checks")
    if tcp and http:
        raise BadRequestError(f"{where}: a check is either TCP or HTTP, not both")
    name = f.text("Name") or default_name
    check_id = f.text("CheckID") or f.text("ID") or default_id or name
    if not check_id:
        raise BadRequestError("Missing check name")
    status = f.text("Status") or "critical"
    if status not in ("passing", "warning", "critical"):
        raise BadRequestError(f"{where}: invalid check status {status!r}")
    header_obj = f.obj("Header") or {}
    header: dict[str, list[str]] = {}
    for key, values in header_obj.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadRequestError(f"{where}: Header values must be arrays of strings")
        header[str(key)] = list(values)
    return CheckDefinition(
        id=check_id,
        name=name or check_id,
        status=status,
        notes=f.text("Notes"),
        service_id=service_id or f.text("ServiceID"),
        ttl=ttl,
        tcp=tcp,
        http=http,
        method=f.text("Method") or "GET",
        header=header,
        interval=interval,
        timeout=_duration(f, "Timeout") or 10.0,
        tls_skip_verify=f.boolean("TLSSkipVerify"),
    )


@attrs.frozen
class ServiceRegistration:
    """A decoded service definition: its NodeService row (``catalog.structs`` shape) and its
    checks (as the reference's ``ServiceDefinition.NodeService()`` and ``CheckTypes()``)."""

    service: dict[str, Any]
    checks: tuple[CheckDefinition, ...]


def decode_service(obj: Any, where: str = "Service") -> ServiceRegistration:
    """A service definition with the reference's agent-side validation."""
    f = _SnakeFields(obj, where)
    name = f.text("Name")
    if not name:
        raise BadRequestError("Missing service name")
    kind = f.text("Kind")
    if kind not in SERVICE_KINDS:
        raise BadRequestError(f"Invalid service kind: {kind!r}")
    sid = f.text("ID") or name
    meta = f.str_map("Meta")
    try:
        validate_service_meta(kind, meta, False)
    except InvalidMetadataError as exc:
        raise BadRequestError(f"Invalid Service Meta: {exc}") from exc
    port = f.integer("Port", 0, 0, 65535)
    if kind == KIND_MESH_GATEWAY and port == 0:
        raise BadRequestError("Port must be non-zero for a Mesh Gateway")
    service = node_service_row(f, kind, sid, name, meta, port)
    raw_checks: list[Any] = []
    if f.raw("Check") is not None:
        raw_checks.append(f.raw("Check"))
    raw_checks += f.obj_list("Checks")
    checks = []
    for i, raw in enumerate(raw_checks, start=1):
        default_id = f"service:{sid}" if len(raw_checks) == 1 else f"service:{sid}:{i}"
        try:
            checks.append(
                decode_check(
                    raw, f"{where}.Checks[{i - 1}]", sid, default_id, f"Service '{name}' check"
                )
            )
        except BadRequestError as exc:
            raise BadRequestError(f"Invalid check: {exc}") from exc
    return ServiceRegistration(service, tuple(checks))

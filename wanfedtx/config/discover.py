# -*- test-case-name: tests.unit.config.test_config_discover -*-
"""Cloud auto-join entries (``provider=NAME key=value ...``): go-discover's syntax and checks.

``retry_join``, ``retry_join_wan`` and ``primary_gateways`` entries that contain ``provider=``
are go-discover configurations, everything else is an address. This module:

* parses an entry exactly as go-discover's ``Parse``: ``key=value`` pairs separated by spaces;
  a key or value that contains a space, a backslash or a double quote is written in double
  quotes, with the backslash escaping a double quote or a backslash inside them (Go string
  escapes, as ``strconv.Unquote``); duplicate keys, a missing ``=``, a missing value and
  unbalanced quotes are errors with go-discover's words (:func:`parse`);
* sorts the entries of one setting into addresses, runnable providers and providers that cannot
  run here (:func:`classify`). Only ``mdns`` runs here; every cloud provider (``aws``, ``gce``,
  ``azure``, ...) needs its cloud's API and credentials and is skipped;
* checks a whole configuration at load (:func:`check_discovery`): one warning names every
  skipped provider; an entry that does not parse, an unknown provider or a bad ``mdns`` option
  is an error; so is a setting whose entries are all skipped providers (it could never join).

The mDNS lookup itself runs in the agent (``wanfedtx.agent.mdns``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs

from wanfedtx.config.durations import DurationError, parse_duration
from wanfedtx.config.errors import ValidationError

#: Providers go-discover knows (its ``Providers`` map, plus ``k8s`` that Consul registers).
KNOWN_PROVIDERS = frozenset(
    {
        "aliyun", "aws", "azure", "digitalocean", "gce", "k8s", "linode", "mdns", "os",
        "packet", "scaleway", "softlayer", "tencentcloud", "triton", "vsphere",
    }
)
#: The providers that run in wanfedtx.
SUPPORTED_PROVIDERS = ("mdns",)
DISCOVERY_KEYS = ("retry_join", "retry_join_wan", "primary_gateways")

MDNS_DEFAULT_DOMAIN = "local"
MDNS_DEFAULT_TIMEOUT = 5.0
MDNS_NO_SERVICE = (
    "discover-mdns: Service record not provided.  Please specify a service record for the "
    "mDNS lookup"
)


class DiscoverError(ValueError):
    """An entry that go-discover would refuse; the message is go-discover's."""


def is_discover_entry(entry: str) -> bool:
    """Consul's test: an entry containing ``provider=`` goes to go-discover."""
    return "provider=" in entry


# -- go-discover's lexer and parser ---------------------------------------------------------

_TEXT, _EQUAL, _ERROR = "text", "equal", "error"


def _unquote(raw: str) -> str:
    """Go's ``strconv.Unquote`` of a double-quoted string (the escapes Go accepts)."""
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        raise DiscoverError("invalid syntax")
    body, out, i = raw[1:-1], [], 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", '"': '"'}
    while i < len(body):
        c = body[i]
        if c == '"' or c == "\n":
            raise DiscoverError("invalid syntax")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise DiscoverError("invalid syntax")
        e = body[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(e)
        digits = body[i + 2 : i + 2 + (width or 0)]
        if width is not None and len(digits) == width:
            try:
                code = int(digits, 16)
            except ValueError:
                raise DiscoverError("invalid syntax") from None
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise DiscoverError("invalid syntax")
            out.append(chr(code))
            i += 2 + width
            continue
        octal = body[i + 1 : i + 4]
        if len(octal) == 3 and all(ch in "01234567" for ch in octal) and int(octal, 8) < 256:
            out.append(chr(int(octal, 8)))
            i += 4
            continue
        raise DiscoverError("invalid syntax")
    return "".join(out)


def _lex(s: str) -> tuple[str, str, int]:
    """One token of ``s``: ``(kind, value, characters consumed)`` (go-discover's ``lex``)."""
    state = "start"
    for i, r in enumerate(s):
        if state == "start":
            if r == " ":
                continue
            state = "equal" if r == "=" else "qtext" if r == '"' else "text"
        elif state == "equal":
            return _EQUAL, "", i
        elif state == "text":
            if r in "= ":
                return _TEXT, s[:i].strip(), i
        elif state == "qtext":
            if r == '"':
                state = "qtextend"
            elif r == "\\":
                state = "qtextesc"
        elif state == "qtextesc":
            state = "qtext"
        elif state == "qtextend":
            try:
                return _TEXT, _unquote(s[:i].strip()), i
            except DiscoverError as e:
                return _ERROR, f"strconv.Unquote: {e}", i
    if state == "equal":
        return _EQUAL, "", len(s)
    if state == "qtext":
        return _ERROR, "unbalanced quotes", len(s)
    if state == "qtextesc":
        return _ERROR, "unterminated escape sequence", len(s)
    if state == "qtextend":
        try:
            return _TEXT, _unquote(s.strip()), len(s)
        except DiscoverError as e:
            return _ERROR, f"strconv.Unquote: {e}", len(s)
    return _TEXT, s.strip(), len(s)


def parse(entry: str) -> dict[str, str]:
    """``key=val key=val ...`` as go-discover's ``Parse`` (an empty dict for an empty entry)."""
    out: dict[str, str] = {}
    s = entry.strip()
    state, key = "key", ""
    while s:
        kind, val, n = _lex(s)
        s = s[n:]
        if state == "key":
            if kind != _TEXT:
                if val == "":
                    raise DiscoverError(
                        f"{key}: - equals in key's value, enclosing double-quote needed "
                        f'{key}="value-with-=-symbol"'
                    )
                raise DiscoverError(f"{key}: error with key=value pair {val}")
            key = val
            if key in out:
                raise DiscoverError(f"{key}: duplicate key")
            state = "equal"
        elif state == "equal":
            if kind != _EQUAL:
                raise DiscoverError(f"{key}: missing '='")
            state = "val"
        else:
            if kind == _TEXT:
                out[key] = val
                state = "key"
            elif kind == _ERROR:
                raise DiscoverError(f"{key}: {val}")
            else:
                raise DiscoverError(f"{key}: missing value")
    if state == "equal":
        raise DiscoverError(f"{key}: missing '='")
    if state == "val":
        raise DiscoverError(f"{key}: missing value")
    return out


def format_config(config: Mapping[str, str]) -> str:
    """go-discover's ``Config.String``: ``provider`` first, then sorted keys, quoted as needed."""

    def quote(s: str) -> str:
        # strconv.Quote in go-discover; here only the two escapes its parser needs
        if any(c in s for c in ' "\\='):
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return s

    keys = ["provider", *sorted(k for k in config if k != "provider")]
    return " ".join(f"{quote(k)}={quote(config[k])}" for k in keys if config.get(k))


# -- providers -------------------------------------------------------------------------------


@attrs.frozen
class MDNSQuery:
    """The ``mdns`` provider's options (go-discover's names and defaults)."""

    service: str
    domain: str = MDNS_DEFAULT_DOMAIN
    timeout: float = MDNS_DEFAULT_TIMEOUT
    v6: bool = True
    v4: bool = True


_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _go_bool(name: str, value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise DiscoverError(
        f'discover-mdns: Failed to parse {name}: strconv.ParseBool: parsing "{value}": '
        "invalid syntax"
    )


def mdns_query(args: Mapping[str, str]) -> MDNSQuery:
    """The ``mdns`` provider's options from a parsed entry, checked as go-discover does."""
    service = args.get("service", "")
    if not service:
        raise DiscoverError(MDNS_NO_SERVICE)
    timeout = MDNS_DEFAULT_TIMEOUT
    if args.get("timeout"):
        try:
            timeout = parse_duration(args["timeout"])
        except DurationError as e:
            raise DiscoverError(f"discover-mdns: Failed to parse timeout: {e}") from None
    v6 = _go_bool("v6", args["v6"]) if args.get("v6") else True
    v4 = _go_bool("v4", args["v4"]) if args.get("v4") else True
    return MDNSQuery(service, args.get("domain") or MDNS_DEFAULT_DOMAIN, timeout, v6, v4)


@attrs.frozen
class Classified:
    """The entries of one setting, sorted by what can be done with them."""

    addresses: tuple[str, ...] = ()
    mdns: tuple[MDNSQuery, ...] = ()
    skipped: tuple[str, ...] = ()
    """Names of providers that cannot run here, in entry order."""

    @property
    def usable(self) -> bool:
        return bool(self.addresses or self.mdns)


def classify(entries: Sequence[str]) -> Classified:
    """Addresses, ``mdns`` lookups and skipped providers; DiscoverError for a bad entry."""
    addrs: list[str] = []
    mdns: list[MDNSQuery] = []
    skipped: list[str] = []
    for entry in entries:
        if not is_discover_entry(entry):
            addrs.append(entry)
            continue
        try:
            args = parse(entry)
        except DiscoverError as e:
            raise DiscoverError(f"discover: {e}") from None
        name = args.get("provider", "")
        if not name:
            raise DiscoverError("discover: no provider")
        if name not in KNOWN_PROVIDERS:
            raise DiscoverError(f"discover: unknown provider {name}")
        if name == "mdns":
            mdns.append(mdns_query(args))
        else:
            skipped.append(name)
    return Classified(tuple(addrs), tuple(mdns), tuple(skipped))


def check_discovery(
    values: Mapping[str, Sequence[str]],
    error: Callable[[str, str], ValidationError],
    warnings: list[str],
) -> None:
    """Check every discovery setting (``values``: key -> entries) at load.

    Appends one warning naming the providers that are skipped; raises ``error(message, key)``
    for an entry go-discover would refuse and for a setting left with nothing to join.
    """
    skipped: dict[str, list[str]] = {}
    for key in DISCOVERY_KEYS:
        entries = values.get(key) or ()
        if not entries:
            continue
        try:
            found = classify(entries)
        except DiscoverError as e:
            raise error(f"{key}: {e}", key) from None
        for name in found.skipped:
            skipped.setdefault(name, [])
            if key not in skipped[name]:
                skipped[name].append(key)
        if not found.usable:
            names = ", ".join(dict.fromkeys(found.skipped))
            raise error(
                f"{key}: every entry uses a cloud auto-join provider that wanfedtx cannot run "
                f"({names}); give host:port addresses or provider=mdns",
                key,
            )
    if skipped:
        listed = "; ".join(f"{name} (in {', '.join(keys)})" for name, keys in skipped.items())
        warnings.append(
            f"cloud auto-join providers that wanfedtx cannot run are skipped: {listed}; "
            f"supported: {', '.join(SUPPORTED_PROVIDERS)}"
        )

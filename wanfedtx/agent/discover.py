# -*- test-case-name: tests.unit.agent.test_agent_discover -*-
"""``retryJoinAddrs``: the join addresses of ``retry_join``, ``retry_join_wan`` and
``primary_gateways`` entries, resolved for one attempt.

* ``provider=mdns ...`` entries browse the LAN (:mod:`wanfedtx.agent.mdns`);
* other ``provider=`` entries name providers that cannot run here: the configuration named
  them in its load warning, so they are skipped without a line per attempt; an entry that does
  not parse is logged as the reference's ``Cannot discover address`` and skipped;
* every other entry is an address, used as written, except that with ``resolve_names``
  (``primary_gateways``) a ``host:port`` whose host is a name becomes one address per A and
  AAAA record of that name, in the resolver's order, so each of them is tried in turn.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolutionReceiver
from twisted.logger import Logger
from zope.interface import implementer

from wanfedtx.agent.mdns import mdns_addrs
from wanfedtx.config.discover import SUPPORTED_PROVIDERS, DiscoverError, MDNSQuery, classify
from wanfedtx.hostport import join_host_port, split_host_port

log = Logger(namespace="agent")

#: ``name -> every IPv4 and IPv6 address of it``
NameResolver = Callable[[str], Awaitable[list[str]]]
MDNSLookup = Callable[[MDNSQuery], Awaitable[list[str]]]


def discovery_methods() -> list[str]:
    """What the reference logs as ``discovery_methods``: the providers that run here."""
    return list(SUPPORTED_PROVIDERS)


@implementer(IResolutionReceiver)
class _Collect:
    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.done: Deferred[list[str]] = Deferred()

    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        if isinstance(address, IPv4Address | IPv6Address) and address.host not in self.addresses:
            self.addresses.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


def reactor_name_resolver(reactor: Any) -> NameResolver:
    """Names through the reactor's ``nameResolver`` (getaddrinfo): all A and AAAA records."""

    def resolve(name: str) -> Deferred[list[str]]:
        receiver = _Collect()
        reactor.nameResolver.resolveHostName(
            receiver, name, 0, addressTypes=[IPv4Address, IPv6Address]
        )
        return receiver.done

    return resolve


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Discover:
    """Resolves the entries of one setting for one join attempt."""

    def __init__(
        self,
        mdns: MDNSLookup,
        resolve_name: NameResolver | None = None,
    ) -> None:
        self.mdns = mdns
        self.resolve_name = resolve_name

    @classmethod
    def for_reactor(cls, reactor: Any) -> Discover:
        def lookup(query: MDNSQuery) -> Deferred[list[str]]:
            return mdns_addrs(reactor, reactor, query)

        return cls(lookup, reactor_name_resolver(reactor))

    async def addrs(
        self, entries: Sequence[str], variant: str, cluster: str, *, resolve_names: bool = False
    ) -> list[str]:
        out: list[str] = []
        for entry in entries:
            try:
                found = classify([entry])
            except DiscoverError as e:
                _cannot(cluster, variant, entry, str(e))
                continue
            for query in found.mdns:
                try:
                    addrs = await self.mdns(query)
                except Exception as e:  # a socket error: this entry finds nothing this time
                    _cannot(cluster, variant, entry, str(e))
                    continue
                log.info(
                    "Discovered addresses: cluster={cluster} provider=mdns service={service} "
                    "addresses={addresses}",
                    cluster=cluster, service=query.service, addresses=addrs,
                )
                out.extend(addrs)
            for addr in found.addresses:
                out.extend(await self._expand(addr, variant, cluster) if resolve_names else [addr])
        return list(dict.fromkeys(out))

    async def _expand(self, addr: str, variant: str, cluster: str) -> list[str]:
        try:
            host, port = split_host_port(addr)
        except ValueError:
            return [addr]
        if _is_ip(host) or self.resolve_name is None:
            return [addr]
        try:
            ips = await self.resolve_name(host)
        except Exception as e:
            _cannot(cluster, variant, addr, str(e))
            return []
        if not ips:
            _cannot(cluster, variant, addr, f"no A or AAAA record for {host}")
        return [join_host_port(ip, port) for ip in ips]


def _cannot(cluster: str, variant: str, address: str, error: str) -> None:
    log.error(
        "Cannot discover address: cluster={cluster} variant={variant} address={address} "
        "error={error}",
        cluster=cluster, variant=variant, address=address, error=error,
    )

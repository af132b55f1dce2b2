"""Which addresses a request may reach: feeds, their item links, robots.txt, redirects.

The check that matters happens at connect time: `GuardedResolver` resolves a
host name once for the transport, checks every address it resolves to, and the
transport connects to exactly the address it checked, so a DNS answer that
changes between check and connect (DNS rebinding) gains nothing. Redirects
cannot get around it either: every hop of every request (`connectors/fetch.py`)
connects through the same resolver. `NetPolicy.check_url`
refuses what can be refused before any I/O (schemes, literal addresses in any
spelling, metadata host names), which gives clearer reasons.

Refused: loopback, private (RFC 1918), link-local, shared address space
(100.64/10), unspecified, multicast, reserved and documentation ranges, IPv6
unique-local and link-local, IPv6 forms that embed an IPv4 address
(IPv4-mapped, NAT64, 6to4, Teredo) when the embedded address is refused, and
cloud metadata endpoints. An allow-list opens named hosts, addresses or
networks (optionally one port) for users who need an internal host; metadata
endpoints stay closed whatever it says.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")

_BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",  # includes 255.255.255.255
        "::/128",
        "::1/128",
        "::/96",  # IPv4-compatible (deprecated)
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",  # unique local
        "fe80::/10",
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",
    )
)

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean…
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::253",
    )
)
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
    }
)
# Names that only ever mean this machine or its private network.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


class Refused(httpx.TransportError):
    """A URL or address the policy does not let us reach. Nothing was connected to."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def normalize_host(host: str) -> str:
    """Lower-case, brackets and trailing dots dropped: `Example.COM.` -> `example.com`."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def _parse_inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """IPv4 in the legacy spellings resolvers accept: `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.fullmatch(p) for p in parts):
        return None
    values = []
    for p in parts:
        if p[:2] in ("0x", "0X"):
            values.append(int(p[2:] or "0", 16))
        elif len(p) > 1 and p.startswith("0"):
            values.append(int(p, 8))
        else:
            values.append(int(p))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """The address a host string denotes by itself (no DNS), in any spelling; else None."""
    host = normalize_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return _parse_inet_aton(host)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` must not be reached from untrusted input, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = address_problem(embedded)
            return f"{inner} (embedded in {ip})" if inner else None
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata endpoint"
    for network in _BLOCKED_NETWORKS:
        if ip.version == network.version and ip in network:
            return f"{ip} is in {network}, which is not a public address range"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


@dataclass(frozen=True)
class AllowRule:
    """One allow-list entry: a host name, an address or a network, optionally one port."""

    host: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    def matches(self, host: str, ip: IPAddress | None, port: int | None) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.host is not None:
            return normalize_host(host) == self.host
        return ip is not None and self.network is not None and ip in self.network

    @staticmethod
    def parse(entry: str) -> AllowRule:
        """`intranet.example`, `10.1.2.3`, `10.0.0.0/8`, `fd12::/16`, `127.0.0.1:8080`, `[::1]:8080`,
        `wiki.corp:8443`. Raises ValueError naming what is wrong."""
        text = entry.strip()
        if not text:
            raise ValueError("empty entry")
        port: int | None = None
        if "/" in text:
            try:
                return AllowRule(network=ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not a network: {exc}") from exc
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]+):(\d+)", text)
        if match:
            text = match.group(1) or match.group(3)
            port_text = match.group(2) or match.group(4)
            port = int(port_text) if port_text else None
            if port is not None and not 0 < port < 65536:
                raise ValueError(f"{entry!r}: port out of range")
        ip = literal_address(text)
        if ip is not None:
            return AllowRule(network=ipaddress.ip_network(ip), port=port)
        host = normalize_host(text)
        if not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", host):
            raise ValueError(f"{entry!r} is neither a host name, an address nor a network")
        return AllowRule(host=host, port=port)


Resolver = Callable[[str, int], list[IPAddress]]


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order, each once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in seen:
            seen.append(ip)
    return seen


@dataclass(frozen=True)
class NetPolicy:
    allow: tuple[AllowRule, ...] = ()

    @staticmethod
    def from_entries(entries: Iterable[str]) -> NetPolicy:
        return NetPolicy(tuple(AllowRule.parse(e) for e in entries))

    def _allowed(self, host: str, ip: IPAddress | None, port: int | None) -> bool:
        return any(rule.matches(host, ip, port) for rule in self.allow)

    def check_host_name(self, host: str, port: int | None) -> None:
        name = normalize_host(host)
        if name in METADATA_HOSTS:
            raise Refused("refused_host", f"{name} is a cloud metadata host")
        if self._allowed(name, None, port):
            return
        if name == "localhost" or name.endswith(_LOCAL_SUFFIXES):
            raise Refused("refused_host", f"{name} names a local or private host")

    def check_address(self, host: str, ip: IPAddress, port: int | None) -> None:
        problem = address_problem(ip)
        if problem is None:
            return
        if ip in METADATA_ADDRESSES or not self._allowed(host, ip, port):
            shown = host if normalize_host(host) == str(ip) else f"{host} -> {ip}"
            raise Refused("refused_address", f"{shown}: {problem}")

    def check_url(self, url: str | httpx.URL) -> httpx.URL:
        """The parsed URL if it may be requested; raises Refused before any I/O otherwise."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
            raise Refused("refused_url", f"unparsable URL {str(url)[:200]!r}: {exc}") from exc
        if parsed.scheme not in ALLOWED_SCHEMES:
            raise Refused("refused_scheme", f"scheme {parsed.scheme!r} is not http(s)")
        if not parsed.host:
            raise Refused("refused_url", f"no host in {str(url)[:200]!r}")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        ip = literal_address(parsed.host)
        if ip is None:
            self.check_host_name(parsed.host, port)
        else:
            self.check_address(parsed.host, ip, port)
        return parsed

    def resolve(self, host: str, port: int, resolver: Resolver = system_resolver) -> list[IPAddress]:
        """The addresses to connect to for host:port, every one of them checked."""
        ip = literal_address(host)
        if ip is not None:
            self.check_address(host, ip, port)
            return [ip]
        self.check_host_name(host, port)
        addresses = resolver(normalize_host(host), port)  # OSError when it cannot
        if not addresses:
            raise OSError(f"{host} has no address")
        # One refused address refuses the name: a name mixing public and private addresses
        # is a rebinding setup, not a news site.
        for address in addresses:
            self.check_address(host, address, port)
        return addresses


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, answering only with addresses the policy allows: the transport
    connects to exactly these addresses, so what is checked is what is connected to.
    aiohttp does not ask a resolver about literal addresses; the fetch core checks those
    in the URL of every hop, which is the address connected to."""

    def __init__(self, policy: NetPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self.resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        addresses = await loop.run_in_executor(None, self.policy.resolve, host, port, self.resolver)
        return [
            {
                "hostname": host,
                "host": str(ip),
                "port": port,
                "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for ip in addresses
        ]

    async def close(self) -> None:
        return None

"""The address policy for untrusted URLs, down to the socket: refused means never connected to."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.fetch import Fetched, Fetcher, HttpSettings
from connectors.netguard import (
    AllowRule,
    NetPolicy,
    Refused,
    Resolver,
    address_problem,
    literal_address,
    system_resolver,
)
from tests.feedserver import FeedServer, Route


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepts += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    yield server
    server.close()


def test_the_listener_counts_what_reaches_it(listener: CountingListener) -> None:
    """The zero-connection assertions below mean something only if a connection would count."""
    with socket.create_connection(("127.0.0.1", listener.port)):
        pass
    with httpx.Client() as client, pytest.raises(httpx.HTTPError):
        client.get(f"http://127.0.0.1:{listener.port}/")
    _wait_for(lambda: listener.accepts == 2)


def _wait_for(condition: Any) -> None:
    for _ in range(100):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("condition not reached")


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0x7f.1",  # hex, short form
    "0x7f000001",
    "127.1",  # short form
    "127.0.1",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "[::1]",
    "localhost",
    "localhost.",  # trailing dot
    "LOCALHOST",
    "0",  # 0.0.0.0 reaches the local host on Linux
    "0.0.0.0",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_the_local_host_is_refused_without_a_connection(
    host: str, listener: CountingListener
) -> None:
    url = f"http://{host}:{listener.port}/secret"
    with pytest.raises(Refused):
        NetPolicy().check_url(url)
    # And through the fetch core, which every request goes through.
    with pytest.raises(Refused):
        fetch(url)
    assert listener.accepts == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1./",
        "http://169.254.169.254/latest/meta-data/",  # metadata
        "http://[fd00:ec2::254]/latest/",  # AWS IMDS over IPv6
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://metadata.google.internal./computeMetadata/v1/",
        "http://100.64.0.1/",  # CGNAT
        "http://100.100.100.200/",  # Alibaba metadata
        "http://224.0.0.1/",  # multicast
        "http://240.0.0.1/",  # reserved
        "http://255.255.255.255/",
        "http://198.18.0.1/",  # benchmarking
        "http://[fc00::1]/",  # ULA
        "http://[fe80::1]/",  # link-local
        "http://[ff02::1]/",  # multicast
        "http://[::]/",
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://[2002:c0a8:101::1]/",  # 6to4 of 192.168.1.1
        "http://0x0a.0.0.1/",
        "http://012.0.0.1/",  # octal 10.0.0.1
        "http://printer.local/",
        "http://app.localhost/",
        "ftp://example.com/file",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "data:text/html,<p>x</p>",
        "http:///no-host",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(Refused) as refused:
        NetPolicy().check_url(url)
    assert refused.value.reason.startswith("refused_")


@pytest.mark.parametrize(
    "url",
    ["https://example.com/news/1", "http://8.8.8.8/", "https://[2606:4700::1111]/", "http://1.1.1.1:8080/"],
)
def test_public_urls_pass(url: str) -> None:
    assert NetPolicy().check_url(url).host


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.258", "10.0.1.2"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("8.8.8.8.", "8.8.8.8"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("0x100000000", None),
    ],
)
def test_literal_addresses_in_legacy_spellings(spelling: str, address: str | None) -> None:
    found = literal_address(spelling)
    assert (str(found) if found else None) == address


def test_embedded_public_ipv4_stays_public() -> None:
    assert address_problem(ipaddress.ip_address("::ffff:8.8.8.8")) is None
    assert address_problem(ipaddress.ip_address("::ffff:10.0.0.1")) is not None


def test_allow_rules_parse_and_refuse_nonsense() -> None:
    assert AllowRule.parse("10.0.0.0/8").network == ipaddress.ip_network("10.0.0.0/8")
    assert AllowRule.parse("127.0.0.1:8080") == AllowRule(
        network=ipaddress.ip_network("127.0.0.1/32"), port=8080
    )
    assert AllowRule.parse("[::1]:99").port == 99
    assert AllowRule.parse("Wiki.Corp.").host == "wiki.corp"
    for bad in ("", "10.0.0.0/33", "host:99999", "two words"):
        with pytest.raises(ValueError):
            AllowRule.parse(bad)


def test_allow_list_opens_a_host_but_never_metadata() -> None:
    policy = NetPolicy.from_entries(
        ["10.0.0.0/8", "intranet.corp", "169.254.0.0/16", "metadata.google.internal"]
    )
    policy.check_url("http://10.9.8.7/")
    policy.check_url("http://intranet.corp/")
    policy.check_url("http://169.254.1.1/")
    with pytest.raises(Refused):
        policy.check_url("http://169.254.169.254/")
    with pytest.raises(Refused):
        policy.check_url("http://metadata.google.internal/")
    with pytest.raises(Refused):
        policy.check_url("http://192.168.0.1/")


def fetch(url: str, allow: tuple[str, ...] = (), resolver: Resolver = system_resolver) -> Fetched:
    """One GET through the fetch core, as feeds, pages and robots.txt are fetched."""

    async def get() -> Fetched:
        fetcher = Fetcher(HttpSettings(allow_hosts=allow, per_host_min_gap=0.0), resolver=resolver)
        try:
            return await fetcher.get(url, [])
        finally:
            await fetcher.aclose()

    return asyncio.run(get())


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected_to(
    feed_server: FeedServer,
) -> None:
    feed_server.routes["/page"] = Route(b"<p>hello</p>", content_type="text/html")
    port = int(feed_server.url("/").rsplit(":", 1)[1].strip("/"))
    lookups: list[str] = []

    def resolver(host: str, _port: int) -> list[Any]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    got = fetch(f"http://news.example:{port}/page", (f"127.0.0.1:{port}",), resolver)
    # news.example has no address of its own: the page can only come from the checked one.
    assert got.body == b"<p>hello</p>"
    assert lookups == ["news.example"]
    assert feed_server.hits("/page")[0]["Host"] == f"news.example:{port}"


def test_a_name_resolving_to_a_refused_address_is_not_connected_to(listener: CountingListener) -> None:
    answers = {
        "rebound.example": ["127.0.0.1"],
        "mixed.example": ["93.184.215.14", "127.0.0.1"],  # one public answer does not launder the other
    }

    def resolver(host: str, _port: int) -> list[Any]:
        return [ipaddress.ip_address(a) for a in answers[host]]

    for host in answers:
        with pytest.raises(Refused, match="127.0.0.1"):
            fetch(f"http://{host}:{listener.port}/", resolver=resolver)
    assert listener.accepts == 0


def test_redirect_hops_are_checked_at_connect_time(
    feed_server: FeedServer, listener: CountingListener
) -> None:
    """Every hop is checked: an allowed first hop cannot walk the request to a refused address."""
    port = int(feed_server.url("/").rsplit(":", 1)[1].strip("/"))
    for n, target in enumerate(
        [
            f"http://127.0.0.1:{listener.port}/x",
            f"http://2130706433:{listener.port}/x",
            f"http://[::ffff:127.0.0.1]:{listener.port}/x",
        ]
    ):
        feed_server.routes[f"/go{n}"] = Route(
            status=302, headers={"Location": target}, content_type="text/html"
        )
    for n in range(3):
        with pytest.raises(Refused):
            fetch(feed_server.url(f"/go{n}"), (f"127.0.0.1:{port}",))
        assert feed_server.hits(f"/go{n}"), "the allowed first hop was fetched"
    assert listener.accepts == 0

"""The http tool's destination checks, without I/O: policies, URL and address checks."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrooms.errors import SchemaValidationError, ToolError
from openrooms.tools.address import describe_address
from openrooms.tools.destination import HttpPolicy, check_addresses, check_url

POLICY = HttpPolicy(
    allow_hosts=("api.example.com", "*.example.org"),
    allow_networks=("127.0.0.1/32", "10.1.0.0/16"),
)
EVERY_IPV4 = HttpPolicy(allow_networks=("0.0.0.0/0",))


# -- HttpPolicy -----------------------------------------------------------------------------


def test_the_default_policy_allows_nothing() -> None:
    policy = HttpPolicy()
    assert policy.allow_hosts == ()
    assert policy.allow_networks == ()
    with pytest.raises(ToolError, match=r"allows no hosts yet.*allow_hosts"):
        check_url("https://api.example.com/", policy)


def test_policy_normalizes_hosts_and_networks() -> None:
    policy = HttpPolicy(
        allow_hosts=["API.Example.COM.", "*.Example.org"], allow_networks=["10.1.2.3/16"]
    )
    assert policy.allow_hosts == ("api.example.com", "*.example.org")
    assert policy.allow_networks == ("10.1.0.0/16",)
    assert policy == HttpPolicy(
        allow_hosts=("api.example.com", "*.example.org"), allow_networks=("10.1.0.0/16",)
    )


def test_from_dict_reads_a_config_section() -> None:
    policy = HttpPolicy.from_dict(
        {
            "allow_hosts": ["api.example.com"],
            "allow_networks": ["127.0.0.1/32"],
            "max_response_bytes": 10,
            "timeout_s": 2,
            "max_redirects": 0,
            "allowed_schemes": ["https"],
        }
    )
    assert policy == HttpPolicy(
        allow_hosts=("api.example.com",),
        allow_networks=("127.0.0.1/32",),
        max_response_bytes=10,
        timeout_s=2.0,
        max_redirects=0,
        allowed_schemes=("https",),
    )
    assert HttpPolicy.from_dict(None) == HttpPolicy()


def test_from_dict_names_every_bad_key_at_once() -> None:
    with pytest.raises(SchemaValidationError) as caught:
        HttpPolicy.from_dict(
            {
                "allow_hosts": "api.example.com",
                "allow_networks": ["10.0.0.0/8", "ten"],
                "timeout_s": 0,
                "max_redirects": True,
                "allowed_schemes": ["ftp"],
                "allow_host": ["typo.example.com"],
            }
        )
    paths = sorted(p.path for p in caught.value.problems)
    assert paths == [
        "http.allow_host",
        "http.allow_hosts",
        "http.allow_networks[1]",
        "http.allowed_schemes",
        "http.max_redirects",
        "http.timeout_s",
    ]
    assert "did you mean 'allow_hosts'?" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_from_dict_refuses_a_non_mapping() -> None:
    with pytest.raises(SchemaValidationError, match="expected a mapping"):
        HttpPolicy.from_dict(["api.example.com"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        (["127.0.0.1"], "is an IP address"),
        (["0x7f000001"], "is an IP address"),
        (["bad host"], "is not a host name"),
        (["a..b"], "is not a host name"),
        ([""], "is not a host name"),
        ([3], "expected a string"),
    ],
)
def test_policy_refuses_bad_host_patterns(hosts: list[object], message: str) -> None:
    with pytest.raises(SchemaValidationError, match=message):
        HttpPolicy(allow_hosts=hosts)  # type: ignore[arg-type]


def test_policy_refuses_bad_numbers() -> None:
    with pytest.raises(SchemaValidationError, match="max_response_bytes"):
        HttpPolicy(max_response_bytes=0)
    with pytest.raises(SchemaValidationError, match="timeout_s"):
        HttpPolicy(timeout_s=-1)


# -- check_url ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://api.example.com", "http://api.example.com/"),
        ("HTTPS://API.EXAMPLE.COM.:8443/a/b?x=1#frag", "https://api.example.com:8443/a/b?x=1"),
        ("https://api.example.com:443/", "https://api.example.com/"),
        ("http://api.example.com:/", "http://api.example.com/"),
        ("http://a.b.example.org/p", "http://a.b.example.org/p"),
        ("http://api.example.com/caf\u00e9?q=\u00fc", "http://api.example.com/caf%C3%A9?q=%C3%BC"),
        ("http://api.example.com/a%2Fb", "http://api.example.com/a%2Fb"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/"),
        ("http://127.1:8000/", "http://127.0.0.1:8000/"),
        ("http://10.1.255.1/", "http://10.1.255.1/"),
    ],
)
def test_allowed_urls_are_normalized(url: str, expected: str) -> None:
    assert check_url(url, POLICY).url == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("api.example.com/x", "not an absolute"),
        ("ftp://api.example.com/", "not an absolute"),
        ("http:///x", "not an absolute"),
        ("http://api.example.com /", "whitespace"),
        ("http://api.example.com\\@evil.com/", "backslash"),
        ("http://api.example.com\t/", "whitespace"),
        ("http://user:pw@api.example.com/", "credentials"),
        ("http://api.example.com@evil.com/", "credentials"),
        ("http://api.example.com:99999/", "invalid port"),
        ("http://api.example.com:0/", "invalid port"),
        ("http://api.example.com:8o/", "invalid port"),
        ("http://[::1/", "not a valid URL"),
        ("http://::1/", "without"),
        ("http://[fe80::1%25lo]/", "zone"),
        ("http://[not-v6]/", "not a valid URL"),
        ("http://1.2.3.256/", "not a valid IPv4"),
        ("http://08.0.0.1/", "not a valid IPv4"),
        ("http://1.2.3.4.5/", "not a valid IPv4"),
        ("http://evil.com/", "not in http.allow_hosts"),
        ("http://example.org/", "not in http.allow_hosts"),
        ("http://api.example.com.evil.com/", "not in http.allow_hosts"),
        ("http://localhost/", "not in http.allow_hosts"),
        ("http://%6c%6f%63%61%6c%68%6f%73%74/", "not a valid host name"),
        ("http://127.0.0.2/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.2.0.1/", "private"),
        ("http://100.64.0.1/", "shared"),
        ("http://8.8.8.8/", "not in http.allow_networks"),
        ("http://[2606:4700::1111]/", "not in http.allow_networks"),
    ],
)
def test_bad_or_unlisted_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        check_url(url, POLICY)


def test_a_refused_loopback_address_says_how_to_allow_it() -> None:
    with pytest.raises(ToolError) as caught:
        check_url("http://127.0.0.1/", HttpPolicy(allow_hosts=("api.example.com",)))
    assert caught.value.message == (
        "127.0.0.1 is a loopback address; allow it with http.allow_networks in the runtime config"
    )


def test_only_listed_schemes_are_allowed() -> None:
    policy = HttpPolicy(allow_hosts=("api.example.com",), allowed_schemes=("https",))
    assert check_url("https://api.example.com/", policy).port == 443
    with pytest.raises(ToolError, match="allowed_schemes"):
        check_url("http://api.example.com/", policy)


def test_a_star_allows_any_host_name_but_no_address() -> None:
    policy = HttpPolicy(allow_hosts=("*",))
    assert check_url("https://anything.example.net/", policy).host == "anything.example.net"
    with pytest.raises(ToolError, match="loopback"):
        check_url("http://127.1/", policy)


# The encodings operating systems accept for 127.0.0.3, and names for this machine.
LOOPBACK_SPELLINGS = [
    "127.3",
    "127.0.3",
    "0x7f000003",
    "0X7F000003",
    "2130706435",
    "017700000003",
    "0177.0.0.3",
    "0x7f.0.0.3",
    "0x7f.0x0.0x0.0x3",
    "127.000.000.003",
    "127.0.0.3.",
    "[::ffff:127.0.0.3]",
    "[::ffff:7f00:3]",
    "[0:0:0:0:0:ffff:7f00:3]",
    "[::127.0.0.3]",
    "[::ffff:0:127.0.0.3]",
    "[2002:7f00:3::1]",
    "[64:ff9b::127.0.0.3]",
    "[::1]",
    "0",
    "0.0.0.0",
    "[::]",
    "\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff13",  # fullwidth 127.0.0.3
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_encoded_local_addresses_are_refused(host: str) -> None:
    with pytest.raises(ToolError, match="address"):
        check_url(f"http://{host}:8080/", POLICY)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "LocalHost", "x.localhost"])
def test_localhost_names_are_refused_when_not_listed(host: str) -> None:
    with pytest.raises(ToolError, match=r"not in http\.allow_hosts"):
        check_url(f"http://{host}/", POLICY)


def test_an_allowed_network_admits_every_spelling_of_its_addresses() -> None:
    for host in ["127.1", "0x7f000001", "2130706433", "0177.0.0.1", "[::ffff:127.0.0.1]"]:
        destination = check_url(f"http://{host}:9/", POLICY)
        assert destination.address is not None
        assert POLICY.allows_address(destination.address)


# -- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "special-purpose"),
        ("198.18.0.1", "special-purpose"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("fd00::1", "unique local"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "IPv4-mapped form of 10.0.0.1, a private"),
        ("::ffff:0:a00:1", "IPv4-translated address embedding 10.0.0.1"),
        ("::10.0.0.1", "IPv4-compatible address embedding 10.0.0.1"),
        ("2002:a9fe:a9fe::", "6to4 address embedding 169.254.169.254"),
        ("64:ff9b::7f00:1", "NAT64 address embedding 127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo address embedding 127.0.0.1"),
        ("2001:db8::1", "special-purpose"),
    ],
)
def test_describe_address_names_the_range(address: str, reason: str) -> None:
    described = describe_address(ip_address(address))
    assert described is not None
    assert reason in described


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_have_no_objection(address: str) -> None:
    assert describe_address(ip_address(address)) is None


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    destination = check_url("https://api.example.com/", POLICY)
    assert check_addresses(destination, ["93.184.216.34"], POLICY) == IPv4Address("93.184.216.34")
    with pytest.raises(ToolError, match=r"resolves to 10\.9\.9\.9, a private address"):
        check_addresses(destination, ["93.184.216.34", "10.9.9.9"], POLICY)
    with pytest.raises(ToolError, match=r"IPv4-mapped form of 127\.0\.0\.2"):
        check_addresses(destination, ["::ffff:127.0.0.2"], POLICY)
    with pytest.raises(ToolError, match="did not resolve"):
        check_addresses(destination, [], POLICY)
    with pytest.raises(ToolError, match="not an IP address"):
        check_addresses(destination, ["nonsense"], POLICY)


def test_a_name_may_resolve_into_an_allowed_network() -> None:
    destination = check_url("https://api.example.com/", POLICY)
    assert check_addresses(destination, ["10.1.2.3", "127.0.0.1"], POLICY) == IPv4Address(
        "10.1.2.3"
    )
    # A mapped address is connected to as the IPv4 address it stands for.
    assert check_addresses(destination, ["::ffff:127.0.0.1"], POLICY) == IPv4Address("127.0.0.1")


# -- properties -----------------------------------------------------------------------------


def _assert_allowed(url: str) -> None:
    """check_url either refuses with ToolError or returns a destination the policy allows."""
    try:
        destination = check_url(url, POLICY)
    except ToolError:
        return
    assert destination.scheme in POLICY.allowed_schemes
    assert 0 < destination.port < 65536
    assert destination.target.startswith("/")
    assert destination.target.isascii() and destination.target.isprintable()
    assert " " not in destination.target
    if destination.address is not None:
        assert POLICY.allows_address(destination.address)
    else:
        assert POLICY.allows_host(destination.host)
        assert destination.host.endswith(("api.example.com", ".example.org"))
    assert check_url(destination.url, POLICY) == destination  # canonical form is stable


@given(st.text(max_size=120))
def test_any_string_is_refused_or_allowed(url: str) -> None:
    _assert_allowed(url)


HOST_ALPHABET = "0123456789abcdefxABCDEFX.:[]%@-_lochstpiuvwmrgn\u3002\uff0e\uff11\uff4c\\/?# "


@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "ftp", "", "http:"]),
    host=st.one_of(
        st.text(alphabet=HOST_ALPHABET, max_size=40),
        st.sampled_from([*LOOPBACK_SPELLINGS, "api.example.com", "x.example.org", "10.1.0.9"]),
    ),
    port=st.sampled_from(["", ":", ":80", ":8080", ":65536", ":-1", ":0x50"]),
    path=st.text(max_size=20),
)
def test_any_url_shape_is_refused_or_allowed(scheme: str, host: str, port: str, path: str) -> None:
    _assert_allowed(f"{scheme}://{host}{port}/{path}")


NUMERIC_PART = r"(0[xX][0-9a-fA-F]{0,9}|0[0-7]{0,12}|[0-9]{1,11})"


@given(st.from_regex(rf"\A{NUMERIC_PART}(\.{NUMERIC_PART}){{0,4}}\Z"))
def test_numeric_hosts_are_read_as_inet_aton_reads_them(host: str) -> None:
    """Whatever the C library would connect to, the check sees the same address."""
    try:
        expected = IPv4Address(socket.inet_aton(host))
    except OSError:
        _assert_allowed(f"http://{host}/")
        return
    destination = check_url(f"http://{host}/", EVERY_IPV4)
    assert destination.address == expected
    assert check_url(f"http://{host}./", EVERY_IPV4).address == expected


@given(st.ip_addresses(v=4))
def test_every_ipv4_spelling_reads_as_the_same_address(address: IPv4Address) -> None:
    n = int(address)
    a, b, c, d = address.packed
    for host in [
        str(n),
        hex(n),
        f"0{n:o}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"0{a:o}.0x{b:x}.{c}.0{d:o}",
        f"[::ffff:{address}]",
    ]:
        destination = check_url(f"http://{host}/", EVERY_IPV4)
        assert destination.address in (address, IPv6Address(f"::ffff:{address}"))


@given(st.ip_addresses())
def test_address_checks_only_ever_raise_tool_error(address: IPv4Address | IPv6Address) -> None:
    destination = check_url("https://api.example.com/", POLICY)
    try:
        chosen = check_addresses(destination, [str(address)], POLICY)
    except ToolError:
        assert describe_address(address) is not None
        return
    assert POLICY.allows_address(chosen) or describe_address(chosen) is None

"""Where the ``http`` tool may connect: :class:`HttpPolicy` and the checks that enforce it.

A destination is checked in two steps, both before any connection is made, and again
for every redirect:

1. :func:`check_url` reads the URL's host the way operating systems and browsers do
   (:mod:`openrooms.tools.address`), so
   ``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1`` and ``LOCALHOST.`` are seen
   for what they are, then checks the scheme and the host against the policy. It makes
   no DNS lookup: a host name that ``allow_hosts`` does not list is never resolved.
2. :func:`check_addresses` checks every address the name resolved to. If any of them is
   loopback, private, link-local, multicast, reserved, shared or otherwise not public
   (including IPv6 forms that embed such an IPv4 address) and ``allow_networks`` does not
   contain it, the request is refused. The tool then connects to the address that was
   checked, so a second DNS answer cannot send it elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any, Final, NoReturn
from urllib.parse import quote, urlsplit

import attrs

from openrooms._wording import did_you_mean
from openrooms.errors import Problem, SchemaValidationError, ToolError
from openrooms.tools.address import (
    IPAddress,
    describe_address,
    ends_in_number,
    normalize_hostname,
    parse_ipv4,
)
from openrooms.tools.redact import redact_text

__all__ = [
    "Destination",
    "HttpPolicy",
    "check_addresses",
    "check_url",
]

_Network = IPv4Network | IPv6Network

TOOL_NAME: Final = "http"
MAX_URL_LENGTH: Final = 8192
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SUPPORTED_SCHEMES: Final = ("http", "https")

_BAD_URL_CHARS: Final = re.compile(r"[\x00-\x20\x7f\\]")
_PORT: Final = re.compile(r"[0-9]{1,5}")
# Everything printable in ASCII: what is left of a path after _BAD_URL_CHARS. Only
# non-ASCII characters get percent-encoded; existing escapes stay as they are.
_PATH_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F))
_ALLOW_NETWORKS_HINT: Final = "allow it with http.allow_networks in the runtime config"


def _refuse(message: str) -> NoReturn:
    raise ToolError(TOOL_NAME, redact_text(message))  # a URL's password stays out of logs


# -- the policy ---------------------------------------------------------------------------


def _problem(path: str, message: str, hint: str = "") -> SchemaValidationError:
    return SchemaValidationError("http policy", [Problem(path, message, hint)])


def _strings(value: object, field: str, noun: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _problem(field, f"expected a list of {noun}, got {type(value).__name__}")
    items = list(value)
    problems = [
        Problem(f"{field}[{i}]", f"expected a string, got {type(item).__name__}")
        for i, item in enumerate(items)
        if not isinstance(item, str)
    ]
    if problems:
        raise SchemaValidationError("http policy", problems)
    return items


def _host_patterns(value: Iterable[str]) -> tuple[str, ...]:
    problems: list[Problem] = []
    patterns: list[str] = []
    for i, raw in enumerate(_strings(value, "allow_hosts", "host names")):
        where = f"allow_hosts[{i}]"
        wildcard = raw.startswith("*.")
        if raw.strip() == "*":
            patterns.append("*")
            continue
        try:
            name = normalize_hostname(raw[2:] if wildcard else raw)
        except ValueError as exc:
            problems.append(
                Problem(where, f"{raw!r} is not a host name ({exc})", "write 'api.example.com'")
            )
            continue
        if ends_in_number(name):
            problems.append(
                Problem(
                    where,
                    f"{raw!r} is an IP address, not a host name",
                    f"list addresses in allow_networks, e.g. '{raw.rstrip('.')}/32'",
                )
            )
            continue
        patterns.append(f"*.{name}" if wildcard else name)
    if problems:
        raise SchemaValidationError("http policy", problems)
    return tuple(patterns)


def _networks(value: Iterable[str]) -> tuple[str, ...]:
    problems: list[Problem] = []
    networks: list[str] = []
    for i, raw in enumerate(_strings(value, "allow_networks", "networks")):
        try:
            networks.append(str(ip_network(raw.strip(), strict=False)))
        except ValueError:
            problems.append(
                Problem(
                    f"allow_networks[{i}]",
                    f"{raw!r} is not a network",
                    "write it in CIDR form: '10.0.0.0/8', '127.0.0.1/32' or '::1/128'",
                )
            )
    if problems:
        raise SchemaValidationError("http policy", problems)
    return tuple(networks)


def _schemes(value: Iterable[str]) -> tuple[str, ...]:
    schemes = tuple(s.lower() for s in _strings(value, "allowed_schemes", "URL schemes"))
    unknown = [s for s in schemes if s not in _SUPPORTED_SCHEMES]
    if unknown:
        raise _problem(
            "allowed_schemes",
            f"unsupported scheme {unknown[0]!r}",
            f"the http tool speaks {' and '.join(_SUPPORTED_SCHEMES)}",
        )
    return schemes


def _whole(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _problem(field, f"expected a whole number, {minimum} or more, got {value!r}")
    return value


def _max_response_bytes(value: int) -> int:
    return _whole(value, "max_response_bytes", 1)


def _max_redirects(value: int) -> int:
    return _whole(value, "max_redirects", 0)


def _seconds(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise _problem("timeout_s", f"expected a number of seconds above 0, got {value!r}")
    return float(value)


def _parse_networks(policy: HttpPolicy) -> tuple[_Network, ...]:
    return tuple(ip_network(n) for n in policy.allow_networks)


@attrs.frozen
class HttpPolicy:
    """Where the ``http`` tool may connect, and how much it may fetch.

    The default policy allows nothing. In a runtime config file it reads::

        http:
          allow_hosts: [api.example.com, "*.githubusercontent.com"]
          allow_networks: [10.1.2.0/24]

    Attributes:
        allow_hosts: host names the tool may reach: exact names, ``*.example.com`` for
            any name under ``example.com`` (at any depth, but not ``example.com``
            itself), or ``*`` for any name. Names are compared without case or a
            trailing dot. The addresses a name resolves to must still be public, or be
            in *allow_networks*.
        allow_networks: CIDR networks the tool may reach although their addresses are
            not public, e.g. ``10.1.2.0/24`` or ``127.0.0.1/32``. A URL that names an IP
            address directly is allowed only when one of these networks contains it.
        max_response_bytes: the body is cut here and the result says ``truncated``.
        timeout_s: the longest a call may take, redirects included; a call's own
            ``timeout_s`` can only shorten it.
        max_redirects: redirects followed per call; one more is an error.
        allowed_schemes: ``http``, ``https`` or both.

    Raises:
        SchemaValidationError: a value is malformed; its problems name the fields.
    """

    allow_hosts: tuple[str, ...] = attrs.field(default=(), converter=_host_patterns)
    allow_networks: tuple[str, ...] = attrs.field(default=(), converter=_networks)
    max_response_bytes: int = attrs.field(default=1024 * 1024, converter=_max_response_bytes)
    timeout_s: float = attrs.field(default=10.0, converter=_seconds)
    max_redirects: int = attrs.field(default=5, converter=_max_redirects)
    allowed_schemes: tuple[str, ...] = attrs.field(default=_SUPPORTED_SCHEMES, converter=_schemes)
    networks: tuple[_Network, ...] = attrs.field(
        init=False, repr=False, eq=False, default=attrs.Factory(_parse_networks, takes_self=True)
    )
    """*allow_networks*, parsed."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, where: str = "http") -> HttpPolicy:
        """Build a policy from trusted configuration (the ``http:`` section of a config file).

        Args:
            data: the section; ``None`` (an empty section) gives the default policy.
            where: the section's name, used as the prefix of every problem's path.

        Raises:
            SchemaValidationError: unknown keys or bad values; every problem found is
                listed, each with its path (``http.allow_hosts[2]``).
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise SchemaValidationError(
                f"{where} settings",
                [Problem(where, f"expected a mapping of settings, got {type(data).__name__}")],
            )
        known = [a.name for a in attrs.fields(cls) if a.init]
        problems: list[Problem] = []
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                hint = did_you_mean(key, known, f"known: {', '.join(known)}")
                problems.append(Problem(f"{where}.{key}", "unknown setting", hint))
                continue
            try:
                cls(**{key: value})  # each field alone, so every bad one is reported
            except SchemaValidationError as exc:
                problems.extend(
                    Problem(f"{where}.{p.path}", p.message, p.hint) for p in exc.problems
                )
            kwargs[key] = value
        if problems:
            raise SchemaValidationError(f"{where} settings", problems)
        return cls(**kwargs)

    def allows_host(self, host: str) -> bool:
        """Whether *host* (a normalized host name, not an address) matches *allow_hosts*."""
        for pattern in self.allow_hosts:
            if pattern == "*" or pattern == host:
                return True
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
        return False

    def allows_address(self, address: IPAddress) -> bool:
        """Whether *allow_networks* contains *address* (or the IPv4 address it maps)."""
        mapped = address.ipv4_mapped if isinstance(address, IPv6Address) else None
        return any(
            address in net or (mapped is not None and mapped in net) for net in self.networks
        )


# -- URLs -----------------------------------------------------------------------------------


@attrs.frozen
class Destination:
    """A URL that passed :func:`check_url`, taken apart.

    Attributes:
        scheme: ``http`` or ``https``.
        host: the lower-case ASCII host name, or the address in its canonical form
            (IPv6 without brackets).
        port: the port, the scheme's default when the URL has none.
        target: the path and query to send, percent-encoded ASCII; never empty.
        address: the IP address, when the URL names one instead of a host name.
    """

    scheme: str
    host: str
    port: int
    target: str
    address: IPAddress | None = None

    @property
    def authority(self) -> str:
        """``host[:port]`` as a ``Host`` header carries it (the port only when not default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL in canonical form."""
        return f"{self.scheme}://{self.authority}{self.target}"

    @property
    def origin(self) -> tuple[str, str, int]:
        """``(scheme, host, port)``: credentials are not sent across a change of origin."""
        return self.scheme, self.host, self.port


def _split_authority(netloc: str, url: str) -> tuple[str, str | None, bool]:
    """``(host, port or None, bracketed)`` from a URL's authority."""
    if "@" in netloc:
        _refuse(f"{url!r} carries credentials before '@'; send them in a header instead")
    if netloc.startswith("["):
        host, close, rest = netloc[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            _refuse(f"{url!r} has a malformed [IPv6] host")
        return host, rest[1:] if rest else None, True
    host, colon, port = netloc.rpartition(":")
    if not colon:
        return netloc, None, False
    if ":" in host:
        _refuse(f"{url!r} has an IPv6 host without [brackets]")
    return host, port, False


def check_url(url: str, policy: HttpPolicy) -> Destination:
    """Parse *url* and check its scheme and host against *policy*, without any I/O.

    A URL that names an IP address (in any spelling the operating system accepts) is
    allowed only when *policy.allow_networks* contains it; a host name only when
    *policy.allow_hosts* lists it, and then its addresses still go through
    :func:`check_addresses`.

    Returns:
        The parsed destination; ``address`` is set when the URL names an IP address.

    Raises:
        ToolError: the URL is malformed or not allowed; the message says why and which
            setting would allow it.
    """
    if not isinstance(url, str) or not url:
        _refuse("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        _refuse(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if _BAD_URL_CHARS.search(url):
        _refuse(f"{url!r} contains whitespace, a control character or a backslash")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        _refuse(f"{url!r} is not a valid URL ({exc})")
    scheme = parts.scheme.lower()
    if scheme not in _SUPPORTED_SCHEMES or not parts.netloc:
        _refuse(f"{url!r} is not an absolute http:// or https:// URL")
    if scheme not in policy.allowed_schemes:
        _refuse(
            f"{scheme}:// URLs are not allowed; allow the scheme with http.allowed_schemes "
            f"in the runtime config"
        )
    raw_host, raw_port, bracketed = _split_authority(parts.netloc, url)
    port = _DEFAULT_PORTS[scheme]
    if raw_port:  # "host:" means the default port
        if not _PORT.fullmatch(raw_port) or not 0 < int(raw_port) < 65536:
            _refuse(f"{url!r} has an invalid port {raw_port!r}")
        port = int(raw_port)
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_PATH_SAFE)

    address: IPAddress | None
    if bracketed:
        if "%" in raw_host:
            _refuse(f"{url!r} names an IPv6 zone; zones are not allowed")
        try:
            address = IPv6Address(raw_host)
        except ValueError:
            _refuse(f"[{raw_host}] in {url!r} is not an IPv6 address")
    else:
        try:
            host = normalize_hostname(raw_host)
        except ValueError as exc:
            _refuse(f"{raw_host!r} in {url!r} is not a valid host name ({exc})")
        if ends_in_number(host):
            address = parse_ipv4(host)
            if address is None:
                _refuse(f"{raw_host!r} is not a valid IPv4 address")
        else:
            address = None
    if address is not None:
        _check_literal(raw_host, address, policy)
        return Destination(scheme, str(address), port, target, address)

    if not policy.allows_host(host):
        if not policy.allow_hosts:
            _refuse(
                f"{host} is not allowed: the http tool allows no hosts yet; allow it in the "
                f'runtime config: http: {{allow_hosts: ["{host}"]}}'
            )
        _refuse(
            f"{host} is not in http.allow_hosts; allow it in the runtime config: "
            f'http: {{allow_hosts: ["{host}"]}}'
        )
    return Destination(scheme, host, port, target)


def _check_literal(raw_host: str, address: IPAddress, policy: HttpPolicy) -> None:
    if policy.allows_address(address):
        return
    shown = raw_host if raw_host == str(address) else f"{raw_host} (the address {address})"
    reason = describe_address(address)
    if reason is not None:
        _refuse(f"{shown} is {reason}; {_ALLOW_NETWORKS_HINT}")
    single = "32" if address.version == 4 else "128"
    _refuse(
        f"{shown} is not in http.allow_networks; an IP address is allowed only by network, "
        f'e.g. http: {{allow_networks: ["{address}/{single}"]}} in the runtime config'
    )


def check_addresses(
    destination: Destination, addresses: Sequence[str], policy: HttpPolicy
) -> IPAddress:
    """Check what *destination*'s host name resolved to, and choose the address to use.

    Every address must be public, or inside *policy.allow_networks*: one bad answer
    among good ones still refuses the request, since a later connection could use it.

    Returns:
        The first address, as the IPv4 address itself when it is IPv4-mapped.

    Raises:
        ToolError: no addresses, one that does not parse, or one that is not allowed.
    """
    if not addresses:
        _refuse(f"{destination.host} did not resolve to any address")
    checked: list[IPAddress] = []
    for text in addresses:
        try:
            address = ip_address(text)
        except ValueError:
            _refuse(f"{destination.host} resolved to {text!r}, which is not an IP address")
        if not policy.allows_address(address):
            reason = describe_address(address)
            if reason is not None:
                _refuse(
                    f"{destination.host} resolves to {address}, {reason}; {_ALLOW_NETWORKS_HINT}"
                )
        checked.append(address)
    first = checked[0]
    if isinstance(first, IPv6Address) and first.ipv4_mapped is not None:
        return first.ipv4_mapped
    return first

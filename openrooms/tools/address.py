"""IP addresses and host names as the operating system reads them, and what they are.

Pure functions, no I/O: :func:`parse_ipv4` reads the many spellings ``inet_aton``
accepts, :func:`normalize_hostname` the forms of a name, and :func:`describe_address`
says why an address is not a public one.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

__all__ = [
    "LOOPBACK_NAME_ADDRESSES",
    "IPAddress",
    "describe_address",
    "ends_in_number",
    "is_loopback_name",
    "normalize_hostname",
    "parse_ipv4",
]

IPAddress = IPv4Address | IPv6Address

LOOPBACK_NAME_ADDRESSES: Final = ("127.0.0.1", "::1")
"""What ``localhost`` and names under it mean, whatever DNS says (RFC 6761)."""

_LABEL: Final = re.compile(r"[a-z0-9_-]{1,63}")
_DIGITS: Final = {10: re.compile(r"[0-9]+"), 8: re.compile(r"[0-7]+"), 16: re.compile(r"[0-9a-f]+")}
_SHARED_V4: Final = IPv4Network("100.64.0.0/10")
_PRIVATE_V4: Final = (
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
)
_BROADCAST_V4: Final = IPv4Address("255.255.255.255")
_UNIQUE_LOCAL_V6: Final = IPv6Network("fc00::/7")
_COMPAT_V6: Final = IPv6Network("::/96")
_TRANSLATED_V6: Final = IPv6Network("::ffff:0:0:0/96")  # RFC 2765; ::ffff:0:0/96 is mapped
_NAT64_V6: Final = IPv6Network("64:ff9b::/96")


# -- reading hosts as operating systems do ------------------------------------------------


def normalize_hostname(raw: str) -> str:
    """Lower-case ASCII form of a host name, without its trailing dot.

    Raises ValueError when the name cannot be a DNS name.
    """
    host = raw.lower()
    if not host.isascii():
        try:
            # IDNA 2003 maps look-alikes too: fullwidth letters and digits, and ideographic
            # full stops, become "localhost" or "127.0.0.1" before any check sees them.
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise ValueError("not a valid international domain name") from exc
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        raise ValueError("empty, or longer than 253 characters")
    if ends_in_number(host):
        return host
    for label in host.split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(f"bad label {label!r}")
    return host


def ends_in_number(host: str) -> bool:
    """Whether browsers (and ``inet_aton``) would read *host* as an IPv4 address."""
    last = host.rsplit(".", 1)[-1]
    if last.startswith("0x"):
        return last == "0x" or bool(_DIGITS[16].fullmatch(last[2:]))
    return bool(_DIGITS[10].fullmatch(last))


def _ipv4_number(part: str) -> int | None:
    if part.startswith("0x"):
        digits, base = part[2:], 16
        if not digits:
            return 0
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if len(digits) > 32 or not _DIGITS[base].fullmatch(digits):
        return None
    return int(digits, base)


def parse_ipv4(host: str) -> IPv4Address | None:
    """Read *host* as ``inet_aton`` and browsers do: 1 to 4 parts, each decimal, octal
    (leading ``0``) or hex (``0x``), the last filling the remaining bytes. ``127.1``,
    ``0x7f000001``, ``2130706433`` and ``0177.0.0.1`` are all ``127.0.0.1``.

    *host* is lower-case without a trailing dot. Returns None when it is not such an
    address.
    """
    parts = host.split(".")
    if len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return IPv4Address(value)


# -- what an address is ---------------------------------------------------------------------


def _describe_v4(address: IPv4Address) -> str | None:
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _SHARED_V4:
        return "a shared (carrier-grade NAT) address"
    if any(address in net for net in _PRIVATE_V4):
        return "a private address"
    if address == _BROADCAST_V4:
        return "the broadcast address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a special-purpose address, not a public one"
    return None


def _embedded_v4(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address that an IPv6 form carries, with the form's name."""
    if address.sixtofour is not None:
        return "a 6to4 address", address.sixtofour
    if address.teredo is not None:
        return "a Teredo address", address.teredo[1]
    low = IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _TRANSLATED_V6:
        return "an IPv4-translated address", low
    if address in _NAT64_V6:
        return "a NAT64 address", low
    if address in _COMPAT_V6 and int(address) > 1:
        return "an IPv4-compatible address", low
    return None


def _describe_v6(address: IPv6Address) -> str | None:
    if address.ipv4_mapped is not None:
        # The operating system connects to the IPv4 address itself.
        reason = _describe_v4(address.ipv4_mapped)
        return reason and f"an IPv4-mapped form of {address.ipv4_mapped}, {reason}"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_site_local:
        return "a site-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _UNIQUE_LOCAL_V6:
        return "a private (unique local) address"
    embedded = _embedded_v4(address)
    if embedded is not None:
        form, v4 = embedded
        reason = _describe_v4(v4)
        if reason is not None:
            return f"{form} embedding {v4}, {reason}"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a special-purpose address, not a public one"
    return None


def describe_address(address: IPAddress) -> str | None:
    """Why *address* is not a public unicast address (``"a loopback address"``), or None.

    IPv6 forms that carry an IPv4 address (mapped, compatible, translated, NAT64, 6to4,
    Teredo) are judged by the IPv4 address as well as by their own range.
    """
    if isinstance(address, IPv4Address):
        return _describe_v4(address)
    return _describe_v6(address)


def is_loopback_name(host: str) -> bool:
    """Whether *host* is ``localhost`` or a name under it, which always mean this machine."""
    return host == "localhost" or host.endswith(".localhost")

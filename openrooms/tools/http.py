"""The built-in ``http`` tool: JSON-friendly HTTP requests to destinations a policy allows.

The default ``http`` tool in :data:`~openrooms.tools.default_tools` has the empty
:class:`HttpPolicy` and refuses every destination; the runtime config's ``http:`` section
(``allow_hosts``, ``allow_networks``) opens it up. Build another with :func:`http_tool`.

What a call does, in order:

- checks the URL with :func:`~openrooms.tools.destination.check_url` (scheme, host,
  encoded IP forms) and refuses it before any DNS lookup or connection;
- resolves the host name once, in a thread, and checks every address with
  :func:`~openrooms.tools.destination.check_addresses`;
- connects to the checked address itself (the URL is rewritten to the address, with the
  ``Host`` header and the TLS server name set to the host name), so a second DNS answer
  cannot move the request elsewhere (DNS rebinding);
- follows redirects itself, up to ``max_redirects``, checking every hop the same way;
- never reads proxy settings, ``.netrc`` or CA paths from the environment;
- reads at most ``max_response_bytes`` of the body and says when it cut it.

Every request carries ``Idempotency-Key: <ToolContext.idempotency_key>``. Callers cannot
set or override that header: the key is what lets an API drop the duplicate when an
interrupted attempt is executed again after a crash (a retry is a new attempt with a
new key), and a key a model makes up would change between executions. Nor may they set
``Host``, ``Content-Length``, ``Transfer-Encoding``, ``Connection`` or other hop-by-hop
headers, which would change where or how the request is framed. Credentials headers
(``Authorization``, ``Cookie``, ``X-Api-Key``...) are dropped when a redirect leaves the
origin. There is no cookie jar: cookies a response sets are returned, not sent back.

The size cap applies to the decoded body: a compressed response is decompressed one
network chunk at a time, and reading stops at the cap. httpx is imported only when the
tool is called (the ``http`` extra: ``pip install 'openrooms[http]'``; ``server`` brings it too).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urljoin

from openrooms._extras import require
from openrooms.errors import InputError, ToolError
from openrooms.tools.address import LOOPBACK_NAME_ADDRESSES, IPAddress, is_loopback_name
from openrooms.tools.base import Tool, ToolContext
from openrooms.tools.destination import (
    TOOL_NAME,
    Destination,
    HttpPolicy,
    check_addresses,
    check_url,
)
from openrooms.tools.redact import is_sensitive_key, redact, redact_text

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpPolicy", "Resolver", "http_tool", "system_resolver"]

Resolver = Callable[[str, int], Iterable[str]]
"""Resolves ``(host, port)`` to IP address strings; :func:`system_resolver` by default."""

METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
USER_AGENT: Final = "openrooms-http-tool"
REFUSED_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "idempotency-key",
    }
)
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE: Final = re.compile(r"[\x00\r\n]")
_NO_BODY: Final = object()

_SCALAR: Final = {"type": ["string", "number", "boolean"]}
PARAMETERS: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "method": {"enum": list(METHODS), "default": "GET"},
        "url": {
            "type": "string",
            "minLength": 1,
            "maxLength": 8192,
            "description": "an absolute http:// or https:// URL",
        },
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string", "maxLength": 8192},
            "description": "request headers; Idempotency-Key is sent for you",
        },
        "json": {"description": "a JSON body to send (sets Content-Type: application/json)"},
        "params": {
            "type": "object",
            "additionalProperties": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]},
            "description": "query parameters, added to those already in the URL",
        },
        "timeout_s": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "seconds for the whole call; capped by the configured limit",
        },
    },
    "required": ["url"],
    "additionalProperties": False,
}


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``getaddrinfo`` gives for *host*, in its order.

    Raises:
        OSError: the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def http_tool(policy: HttpPolicy, *, resolver: Resolver | None = None) -> Tool:
    """An ``http`` tool that may reach only what *policy* allows.

    Args:
        policy: where requests may go, and the size and time limits.
        resolver: resolves host names (default :func:`system_resolver`); it runs in its
            own thread and is bounded by the call's timeout.

    Returns:
        A :class:`Tool` named ``http``. Its result is ``{"status", "headers", "json" or
        "text", "truncated", "url"}``: headers with lower-case names (repeated ones joined
        with ``", "``), ``json`` when the response says it is JSON and parses, ``text``
        otherwise (``""`` for HEAD), and the final URL after redirects.
    """
    resolve = resolver or system_resolver

    def http(
        ctx: ToolContext,
        url: str,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        json: Any = _NO_BODY,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        return _Call(policy, resolve, ctx, timeout_s).run(method, url, headers, json, params)

    return Tool(
        name=TOOL_NAME,
        description=(
            "Make an HTTP request (GET, POST, PUT, PATCH, DELETE, HEAD) to an allowed host "
            "and return {status, headers, json or text, truncated, url}. Send a JSON body "
            "with 'json' and query parameters with 'params'."
        ),
        parameters=PARAMETERS,
        fn=http,
        context_param="ctx",
        templating={"url": "url"},  # values spliced into a url template are percent-encoded
    )


def _refuse(message: str) -> ToolError:
    return ToolError(TOOL_NAME, redact_text(message))  # a URL's password stays out of logs


def _caller_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in (headers or {}).items():
        lower = name.lower()
        if not _TOKEN.fullmatch(name):
            raise _refuse(f"header name {name!r} is not valid")
        if lower == "idempotency-key":
            raise _refuse(
                "the http tool sends Idempotency-Key itself (the room's key for this "
                "attempt, stable across retries); remove it from headers"
            )
        if lower in REFUSED_HEADERS:
            raise _refuse(f"header {name!r} is set by the http tool; remove it from headers")
        if lower in seen:
            raise _refuse(f"header {name!r} is given twice (header names ignore case)")
        if _BAD_VALUE.search(value):
            raise _refuse(f"header {name!r} contains a line break or NUL character")
        if not value.isascii():
            raise _refuse(
                f"header {name!r} contains non-ASCII characters; percent-encode them first"
            )
        seen.add(lower)
        result[name] = value
    return result


def _query(params: Mapping[str, Any]) -> str:
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else json.dumps(value)

    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, text(item)))
    return urlencode(pairs)


def _with_params(destination: Destination, params: Mapping[str, Any] | None) -> Destination:
    if not params:
        return destination
    sep = "&" if "?" in destination.target else "?"
    return Destination(
        destination.scheme,
        destination.host,
        destination.port,
        destination.target + sep + _query(params),
        destination.address,
    )


class _Call:
    """One tool call: its deadline, headers and body, across every redirect hop."""

    def __init__(
        self, policy: HttpPolicy, resolve: Resolver, ctx: ToolContext, timeout_s: float | None
    ) -> None:
        self.policy, self.resolve, self.ctx = policy, resolve, ctx
        self.limit_s = policy.timeout_s if timeout_s is None else min(timeout_s, policy.timeout_s)
        self.deadline = time.monotonic() + self.limit_s
        self.httpx: Any = None  # the module, imported by run()

    def remaining(self, doing: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.timed_out(doing)
        return left

    def timed_out(self, doing: str) -> ToolError:
        return _refuse(
            f"timed out after {self.limit_s:g}s {doing} (the limit is the call's timeout_s, "
            f"at most http.timeout_s = {self.policy.timeout_s:g}s)"
        )

    def run(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: Any,
        params: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        self.httpx = require("httpx", feature="the http tool", extra="http")
        sent = _caller_headers(headers)
        content: bytes | None = None
        if body is not _NO_BODY:
            content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
            if not any(k.lower() == "content-type" for k in sent):
                sent["Content-Type"] = "application/json"
        destination = _with_params(check_url(url, self.policy), params)
        address = self.pin(destination)
        hop = 0
        while True:
            result, location = self.send(destination, address, method, sent, content)
            if location is None:
                return result
            if hop == self.policy.max_redirects:
                raise _refuse(
                    f"stopped at {destination.url}: more than {hop} redirects "
                    f"(the limit is http.max_redirects)"
                )
            hop += 1
            try:
                following = check_url(urljoin(destination.url, location), self.policy)
                address = self.pin(following)
            except (ToolError, ValueError) as exc:  # ValueError: urljoin met a broken URL
                why = exc.message if isinstance(exc, ToolError) else f"not a valid URL ({exc})"
                raise _refuse(
                    f"redirect {hop} from {destination.url} to {location!r}: {why}"
                ) from exc
            status = result["status"]
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, content = "GET", None
                sent = {k: v for k, v in sent.items() if k.lower() != "content-type"}
            if following.origin != destination.origin:
                sent = {k: v for k, v in sent.items() if not is_sensitive_key(k)}
            destination = following

    def pin(self, destination: Destination) -> IPAddress:
        """The checked address to connect to; resolves host names exactly once."""
        address = destination.address
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped  # connect to the IPv4 address it stands for
        if address is not None:
            return address
        if is_loopback_name(destination.host):
            addresses = list(LOOPBACK_NAME_ADDRESSES)
        else:
            addresses = self.lookup(destination.host, destination.port)
        return check_addresses(destination, addresses, self.policy)

    def lookup(self, host: str, port: int) -> list[str]:
        """Resolve on a daemon thread, so a hung resolver cannot outlive the deadline."""
        outcome: list[tuple[bool, Any]] = []
        done = threading.Event()

        def work() -> None:
            try:
                outcome.append((True, [str(a) for a in self.resolve(host, port)]))
            except BaseException as exc:  # handed to the waiting caller
                outcome.append((False, exc))
            finally:
                done.set()

        threading.Thread(target=work, name="openrooms-http-resolve", daemon=True).start()
        if not done.wait(self.remaining(f"resolving {host}")):
            raise self.timed_out(f"resolving {host}")
        ok, value = outcome[0]
        if ok:
            return list(value)
        if isinstance(value, OSError):
            raise _refuse(f"could not resolve {host}: {value}") from value
        raise value

    def send(
        self,
        destination: Destination,
        address: IPAddress,
        method: str,
        headers: dict[str, str],
        content: bytes | None,
    ) -> tuple[dict[str, Any], str | None]:
        """One request to *address*; returns the result and the redirect location, if any."""
        hx = self.httpx
        timeout = self.remaining(f"before connecting to {destination.host}")
        extensions: dict[str, Any] = {}
        if destination.scheme == "https" and destination.address is None:
            extensions["sni_hostname"] = destination.host  # verify the name, not the address
        # A fresh client per hop: a pooled connection made for one host name must not
        # carry a request for another that resolved to the same address.
        transport = hx.HTTPTransport(trust_env=False, retries=0)
        with hx.Client(transport=transport, trust_env=False, follow_redirects=False) as client:
            try:
                request = client.build_request(
                    method,
                    hx.URL(
                        scheme=destination.scheme,
                        host=str(address),
                        port=destination.port,
                        raw_path=destination.target.encode("ascii"),
                    ),
                    headers={
                        "User-Agent": USER_AGENT,
                        **headers,
                        "Host": destination.authority,
                        IDEMPOTENCY_HEADER: self.ctx.idempotency_key,
                    },
                    content=content,
                    extensions=extensions,
                    timeout=timeout,
                )
                response = client.send(request, stream=True)
            except hx.TimeoutException as exc:
                raise self.timed_out(f"waiting for {destination.host}") from exc
            except hx.ConnectError as exc:
                raise _refuse(
                    f"could not connect to {destination.host} ({address}) port "
                    f"{destination.port}: {exc}"
                ) from exc
            except (hx.HTTPError, hx.InvalidURL) as exc:
                raise _refuse(f"request to {destination.url} failed: {exc}") from exc
            try:
                return self.result(destination, method, response)
            finally:
                response.close()

    def result(
        self, destination: Destination, method: str, response: httpx.Response
    ) -> tuple[dict[str, Any], str | None]:
        hx = self.httpx
        result: dict[str, Any] = {
            "status": response.status_code,
            "headers": _headers(response),
            "truncated": False,
            "url": redact(destination.url),  # as in TOOL_CALLED's args: no ?token= value
        }
        location = response.headers.get("location")
        if response.status_code in _REDIRECTS and location:
            return result, location
        try:
            body, result["truncated"] = self.read(response, destination)
        except hx.TimeoutException as exc:
            raise self.timed_out(f"reading the response from {destination.host}") from exc
        except (hx.HTTPError, hx.StreamError) as exc:
            raise _refuse(f"reading the response from {destination.url} failed: {exc}") from exc
        if method == "HEAD":
            result["text"] = ""
        elif not result["truncated"] and _is_json(response) and (parsed := _json(body)) is not None:
            result["json"] = parsed[0]
        else:
            result["text"] = body.decode(_charset(response), errors="replace")
        return result, None

    def read(self, response: httpx.Response, destination: Destination) -> tuple[bytes, bool]:
        """The body, cut at ``max_response_bytes``; and whether it was cut."""
        cap = self.policy.max_response_bytes
        body = bytearray()
        for chunk in response.iter_bytes():
            room = cap - len(body)
            if len(chunk) > room:
                body += chunk[:room]
                return bytes(body), True
            body += chunk
            self.remaining(f"reading the response from {destination.host}")
        return bytes(body), False


def _headers(response: httpx.Response) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _is_json(response: httpx.Response) -> bool:
    kind = str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _json(body: bytes) -> tuple[Any] | None:
    """``(value,)`` when *body* is strict JSON, else None (then it is returned as text)."""
    from openrooms.loading import parse_json

    try:  # the one strict reader: duplicate keys, NaN, huge integers and deep nesting refused
        return (parse_json(body.decode("utf-8")),)
    except (InputError, UnicodeDecodeError):
        return None


def _charset(response: httpx.Response) -> str:
    charset = response.charset_encoding or "utf-8"
    try:
        b"".decode(charset)
    except LookupError:
        return "utf-8"
    return charset

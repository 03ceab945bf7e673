"""The http tool against real sockets on 127.0.0.1: an allowed server and a sink that
must never see a connection.

The allowed server listens on 127.0.0.1, which ``allow_networks=("127.0.0.1/32",)``
admits. The sink listens on 127.0.0.3 (Linux routes all of 127/8 to the loopback
interface), which no policy here allows; it counts the connections it was offered, and a
refused request must leave that count at zero. Name resolution is checked through the
tool's ``resolver`` hook: there is no DNS here, so a recording resolver stands in for it
(the addresses it returns are real and are really connected to).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import attrs
import pytest

from openrooms.errors import SchemaValidationError, ToolError
from openrooms.tools import HttpPolicy, ToolContext, default_tools, http_tool
from openrooms.types import RoomId

httpx = pytest.importorskip("httpx")

CTX = ToolContext(room_id=RoomId("room-1"), node="fetch", idempotency_key="room-1/fetch/1")
SERVER_HOST = "127.0.0.1"
SINK_HOST = "127.0.0.3"


# -- the allowed server ---------------------------------------------------------------------


@attrs.frozen
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, family: socket.AddressFamily = socket.AF_INET) -> None:
        self.address_family = family
        super().__init__((host, 0), Handler)
        self.requests: list[Seen] = []
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.requests.append(Seen(self.command, self.path, headers, body))
        if url.path == "/echo":
            echo = {
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": json.loads(body) if body else None,
            }
            self.reply(200, json.dumps(echo).encode(), "application/json")
        elif url.path == "/big":
            self.reply(200, b"x" * int(query["n"]), "text/plain")
        elif url.path == "/text":
            self.reply(200, "h\u00e9llo".encode("latin-1"), "text/plain; charset=latin-1")
        elif url.path == "/notjson":
            self.reply(200, b"{oops", "application/json")
        elif url.path == "/redirect":
            status = int(query.get("status", "302"))
            self.reply(status, b"", "text/plain", Location=query["to"])
        elif url.path == "/slow":
            self.server.release.wait(10)
            self.reply(200, b"late", "text/plain")
        else:
            self.reply(404, b"no such page", "text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


def serve(server: Server) -> Iterator[Server]:
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    yield from serve(Server(SERVER_HOST))


# -- the sink -------------------------------------------------------------------------------


class Sink:
    """A listening socket nobody should reach; ``connections()`` counts who did."""

    def __init__(self, host: str) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind((host, 0))
        self.socket.listen(64)
        self.socket.setblocking(False)
        self.port = int(self.socket.getsockname()[1])
        self.accepted = 0

    def connections(self) -> int:
        """Accept whatever is queued (a client's connect() returns only once it is)."""
        while True:
            try:
                conn, _ = self.socket.accept()
            except BlockingIOError:
                return self.accepted
            conn.close()
            self.accepted += 1


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink(SINK_HOST)
    yield s
    s.socket.close()


# -- helpers --------------------------------------------------------------------------------


class RecordingResolver:
    """Stands in for DNS: answers from a table and records every question."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Iterable[str]:
        self.asked.append((host, port))
        queue = self.answers.get(host)
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return queue.pop(0) if len(queue) > 1 else queue[0]


def policy(**changes: Any) -> HttpPolicy:
    base: dict[str, Any] = {
        "allow_hosts": ("api.example.com",),
        "allow_networks": (f"{SERVER_HOST}/32",),
        "timeout_s": 5.0,
    }
    return HttpPolicy(**{**base, **changes})


def call(args: dict[str, Any], pol: HttpPolicy | None = None, resolver: Any = None) -> Any:
    tool = http_tool(pol or policy(), resolver=resolver)
    return asyncio.run(tool.call(args, CTX))


def refused(args: dict[str, Any], pol: HttpPolicy | None = None, resolver: Any = None) -> str:
    with pytest.raises(ToolError) as caught:
        call(args, pol, resolver)
    assert caught.value.tool == "http"
    return caught.value.message


# -- requests that are allowed --------------------------------------------------------------


def test_get_returns_status_headers_and_json(server: Server) -> None:
    url = f"http://{SERVER_HOST}:{server.port}/echo"
    result = call({"url": url})
    assert result["status"] == 200
    assert result["truncated"] is False
    assert result["url"] == url
    assert result["headers"]["content-type"] == "application/json"
    assert result["json"]["method"] == "GET"
    assert "text" not in result
    json.dumps(result)


def test_post_sends_json_and_the_idempotency_key(server: Server) -> None:
    body = {"order": 7, "items": ["a", None], "note": "caf\u00e9"}
    result = call(
        {
            "method": "POST",
            "url": f"http://{SERVER_HOST}:{server.port}/echo",
            "json": body,
            "headers": {"X-Trace": "t-1"},
        }
    )
    echo = result["json"]
    assert echo["method"] == "POST"
    assert echo["body"] == body
    assert echo["headers"]["content-type"] == "application/json"
    assert echo["headers"]["x-trace"] == "t-1"
    assert echo["headers"]["idempotency-key"] == CTX.idempotency_key
    assert echo["headers"]["host"] == f"{SERVER_HOST}:{server.port}"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_methods_reach_the_server(server: Server, method: str) -> None:
    result = call({"method": method, "url": f"http://{SERVER_HOST}:{server.port}/echo"})
    assert result["json"]["method"] == method
    assert result["json"]["headers"]["idempotency-key"] == CTX.idempotency_key


def test_json_null_is_sent_as_a_body(server: Server) -> None:
    call({"method": "PUT", "url": f"http://{SERVER_HOST}:{server.port}/echo", "json": None})
    assert server.requests[-1].body == b"null"


def test_head_returns_empty_text(server: Server) -> None:
    result = call({"method": "HEAD", "url": f"http://{SERVER_HOST}:{server.port}/echo"})
    assert result["status"] == 200
    assert result["text"] == ""


def test_params_are_added_to_the_query(server: Server) -> None:
    result = call(
        {
            "url": f"http://{SERVER_HOST}:{server.port}/echo?a=1",
            "params": {"q": "a b&c", "n": 3, "flag": True, "tag": ["x", "y"]},
        }
    )
    assert result["json"]["path"] == "/echo?a=1&q=a+b%26c&n=3&flag=true&tag=x&tag=y"


def test_text_bodies_are_decoded_with_their_charset(server: Server) -> None:
    result = call({"url": f"http://{SERVER_HOST}:{server.port}/text"})
    assert result["text"] == "h\u00e9llo"


def test_a_body_that_claims_json_but_is_not_comes_back_as_text(server: Server) -> None:
    result = call({"url": f"http://{SERVER_HOST}:{server.port}/notjson"})
    assert result["text"] == "{oops"
    assert "json" not in result


def test_error_statuses_are_results_not_errors(server: Server) -> None:
    result = call({"url": f"http://{SERVER_HOST}:{server.port}/missing"})
    assert result["status"] == 404
    assert result["text"] == "no such page"


def test_the_body_is_cut_at_max_response_bytes(server: Server) -> None:
    pol = policy(max_response_bytes=1000)
    result = call({"url": f"http://{SERVER_HOST}:{server.port}/big?n=5000000"}, pol)
    assert result["truncated"] is True
    assert result["text"] == "x" * 1000
    exact = call({"url": f"http://{SERVER_HOST}:{server.port}/big?n=1000"}, pol)
    assert exact["truncated"] is False
    assert len(exact["text"]) == 1000


def test_a_truncated_json_body_comes_back_as_text(server: Server) -> None:
    result = call(
        {"url": f"http://{SERVER_HOST}:{server.port}/echo"}, policy(max_response_bytes=10)
    )
    assert result["truncated"] is True
    assert len(result["text"]) == 10
    assert "json" not in result


def test_a_slow_server_times_out(server: Server) -> None:
    started = time.monotonic()
    message = refused({"url": f"http://{SERVER_HOST}:{server.port}/slow", "timeout_s": 0.3})
    assert "timed out after 0.3s" in message
    assert time.monotonic() - started < 5


def test_the_policy_caps_the_calls_timeout(server: Server) -> None:
    message = refused(
        {"url": f"http://{SERVER_HOST}:{server.port}/slow", "timeout_s": 60},
        policy(timeout_s=0.3),
    )
    assert "timed out after 0.3s" in message
    assert "http.timeout_s = 0.3s" in message


def test_a_closed_port_is_a_tool_error(sink: Sink) -> None:
    closed = socket.socket()
    closed.bind((SERVER_HOST, 0))
    port = closed.getsockname()[1]
    closed.close()
    message = refused({"url": f"http://{SERVER_HOST}:{port}/"})
    assert message.startswith(f"could not connect to {SERVER_HOST}")


# -- redirects ------------------------------------------------------------------------------


def test_redirects_within_the_allow_list_are_followed(server: Server) -> None:
    base = f"http://{SERVER_HOST}:{server.port}"
    result = call({"url": f"{base}/redirect?to=/redirect%3Fto%3D/echo"})
    assert result["status"] == 200
    assert result["url"] == f"{base}/echo"
    assert [r.path for r in server.requests] == [
        "/redirect?to=/redirect%3Fto%3D/echo",
        "/redirect?to=/echo",
        "/echo",
    ]
    assert {r.headers["idempotency-key"] for r in server.requests} == {CTX.idempotency_key}


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [
        (301, "POST", "GET"),
        (302, "POST", "GET"),
        (303, "PUT", "GET"),
        (307, "POST", "POST"),
        (308, "PUT", "PUT"),
        (303, "HEAD", "HEAD"),
    ],
)
def test_redirects_change_the_method_as_browsers_do(
    server: Server, status: int, method: str, expected: str
) -> None:
    url = f"http://{SERVER_HOST}:{server.port}/redirect?status={status}&to=/echo"
    call({"method": method, "url": url, "json": {"k": 1}})
    last = server.requests[-1]
    assert last.method == expected
    assert last.body == (b'{"k": 1}' if expected == method else b"")


def test_too_many_redirects_is_an_error(server: Server) -> None:
    base = f"http://{SERVER_HOST}:{server.port}"
    message = refused(
        {"url": f"{base}/redirect?to=/redirect%3Fto%3D/echo"}, policy(max_redirects=1)
    )
    assert "more than 1 redirects" in message
    assert len(server.requests) == 2


def test_a_redirect_to_the_sink_is_refused_at_that_hop(server: Server, sink: Sink) -> None:
    target = f"http://127.3:{sink.port}/"
    message = refused({"url": f"http://{SERVER_HOST}:{server.port}/redirect?to={target}"})
    assert message.startswith(f"redirect 1 from http://{SERVER_HOST}:{server.port}/")
    assert "127.3 (the address 127.0.0.3) is a loopback address" in message
    assert len(server.requests) == 1
    assert sink.connections() == 0


def test_a_redirect_to_an_unlisted_host_is_refused(server: Server) -> None:
    resolver = RecordingResolver({})
    message = refused(
        {"url": f"http://{SERVER_HOST}:{server.port}/redirect?to=http://evil.example.net/"},
        resolver=resolver,
    )
    assert "evil.example.net is not in http.allow_hosts" in message
    assert resolver.asked == []


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://[oops", "not a valid URL"),
        ("ftp://api.example.com/", "not an absolute http:// or https:// URL"),
        ("http://user:pw@api.example.com/", "carries credentials"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ],
)
def test_bad_redirect_locations_are_refused(server: Server, location: str, message: str) -> None:
    url = f"http://{SERVER_HOST}:{server.port}/redirect?to={quote(location, safe='')}"
    text = refused({"url": url})
    assert text.startswith(f"redirect 1 from http://{SERVER_HOST}:{server.port}/redirect")
    assert message in text
    assert len(server.requests) == 1


def test_credentials_do_not_follow_a_redirect_to_another_origin(server: Server) -> None:
    resolver = RecordingResolver({"api.example.com": [[SERVER_HOST]]})
    other = f"http://api.example.com:{server.port}/echo"
    result = call(
        {
            "url": f"http://{SERVER_HOST}:{server.port}/redirect?to={other}",
            "headers": {"Authorization": "Bearer t", "X-Api-Key": "k", "Accept": "text/plain"},
        },
        resolver=resolver,
    )
    headers = result["json"]["headers"]
    assert "authorization" not in headers and "x-api-key" not in headers
    assert headers["accept"] == "text/plain"
    assert headers["idempotency-key"] == CTX.idempotency_key
    assert server.requests[0].headers["authorization"] == "Bearer t"


# -- name resolution and pinning ------------------------------------------------------------


def test_the_checked_address_is_the_one_connected_to(server: Server) -> None:
    """There is no DNS here: only the pinned address can have reached the server."""
    resolver = RecordingResolver({"api.example.com": [[SERVER_HOST]]})
    result = call({"url": f"http://API.example.com.:{server.port}/echo"}, resolver=resolver)
    assert result["json"]["headers"]["host"] == f"api.example.com:{server.port}"
    assert result["url"] == f"http://api.example.com:{server.port}/echo"
    assert resolver.asked == [("api.example.com", server.port)]


def test_each_redirect_hop_is_resolved_and_checked_again(server: Server, sink: Sink) -> None:
    """A name that rebinds to a refused address between hops is caught at the next hop."""
    resolver = RecordingResolver({"api.example.com": [[SERVER_HOST], [SINK_HOST]]})
    to = f"http://api.example.com:{sink.port}/"
    message = refused(
        {"url": f"http://api.example.com:{server.port}/redirect?to={to}"}, resolver=resolver
    )
    assert message.startswith(f"redirect 1 from http://api.example.com:{server.port}/redirect")
    assert "api.example.com resolves to 127.0.0.3, a loopback address" in message
    assert resolver.asked == [("api.example.com", server.port), ("api.example.com", sink.port)]
    assert len(server.requests) == 1
    assert sink.connections() == 0


def test_a_name_with_any_private_address_is_refused(sink: Sink) -> None:
    resolver = RecordingResolver({"api.example.com": [["93.184.216.34", SINK_HOST]]})
    message = refused({"url": f"http://api.example.com:{sink.port}/"}, resolver=resolver)
    assert "resolves to 127.0.0.3, a loopback address" in message
    assert sink.connections() == 0


def test_an_unlisted_host_is_refused_without_a_lookup(sink: Sink) -> None:
    resolver = RecordingResolver({"evil.example.net": [[SINK_HOST]]})
    message = refused({"url": f"http://evil.example.net:{sink.port}/"}, resolver=resolver)
    assert message.startswith("evil.example.net is not in http.allow_hosts")
    assert 'http: {allow_hosts: ["evil.example.net"]}' in message
    assert resolver.asked == []
    assert sink.connections() == 0


def test_a_name_that_does_not_resolve_is_a_tool_error() -> None:
    message = refused({"url": "http://api.example.com/"}, resolver=RecordingResolver({}))
    assert message.startswith("could not resolve api.example.com")


def test_a_hung_resolver_is_bounded_by_the_timeout() -> None:
    gate = threading.Event()

    def hang(host: str, port: int) -> list[str]:
        gate.wait(10)
        return [SERVER_HOST]

    try:
        message = refused({"url": "http://api.example.com/", "timeout_s": 0.2}, resolver=hang)
    finally:
        gate.set()
    assert "timed out after 0.2s resolving api.example.com" in message


@pytest.mark.parametrize("name", ["localhost", "LOCALHOST.", "app.localhost"])
def test_localhost_is_refused_even_when_listed_and_never_looked_up(sink: Sink, name: str) -> None:
    resolver = RecordingResolver({})
    pol = policy(allow_hosts=("localhost", "*.localhost"), allow_networks=())
    message = refused({"url": f"http://{name}:{sink.port}/"}, pol, resolver)
    assert "resolves to 127.0.0.1, a loopback address" in message
    assert resolver.asked == []
    assert sink.connections() == 0


# -- encoded addresses and the sink ---------------------------------------------------------

SINK_SPELLINGS = [
    "127.0.0.3",
    "127.3",
    "127.0.3",
    "0x7f000003",
    "2130706435",
    "017700000003",
    "0177.0.0.3",
    "0x7f.0.0.3",
    "127.0.0.3.",
    "[::ffff:127.0.0.3]",
    "[::ffff:7f00:3]",
    "[0:0:0:0:0:ffff:7f00:3]",
    "[::127.0.0.3]",
    "[::1]",
    "0",
    "0.0.0.0",
    "[::]",
    "localhost",
    "LOCALHOST.",
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",  # fullwidth "localhost"
    "\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff13",  # fullwidth "127.0.0.3"
]


@pytest.mark.parametrize("host", SINK_SPELLINGS)
def test_encoded_forms_of_the_sink_are_refused_without_connecting(sink: Sink, host: str) -> None:
    resolver = RecordingResolver({})
    refused({"url": f"http://{host}:{sink.port}/"}, resolver=resolver)
    refused({"url": f"https://{host}:{sink.port}/"}, resolver=resolver)
    assert resolver.asked == []
    assert sink.connections() == 0


def test_the_sink_counts_a_real_connection(sink: Sink) -> None:
    """The control for the tests above: a connection does show up."""
    with socket.create_connection((SINK_HOST, sink.port), timeout=5):
        pass
    assert sink.connections() == 1


@pytest.mark.parametrize("var", ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy"])
def test_proxy_variables_are_ignored(
    server: Server, sink: Sink, monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv(var, f"http://{SINK_HOST}:{sink.port}")
    result = call({"url": f"http://{SERVER_HOST}:{server.port}/echo"})
    assert result["status"] == 200
    assert len(server.requests) == 1
    assert sink.connections() == 0


def test_httpx_would_have_used_the_proxy(sink: Sink, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: without trust_env=False the sink is reached."""
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://{SINK_HOST}:{sink.port}")
    with httpx.Client(timeout=0.2) as client, pytest.raises(httpx.TimeoutException):
        client.get("http://api.example.com/")
    assert sink.connections() == 1


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Host", "content-length", "Transfer-Encoding", "CONNECTION", "Upgrade", "TE"]
)
def test_framing_headers_are_refused(server: Server, name: str) -> None:
    url = f"http://{SERVER_HOST}:{server.port}/echo"
    message = refused({"url": url, "headers": {name: "x"}})
    assert f"header {name!r} is set by the http tool" in message
    assert server.requests == []


def test_the_idempotency_key_cannot_be_overridden(server: Server) -> None:
    url = f"http://{SERVER_HOST}:{server.port}/echo"
    message = refused({"url": url, "headers": {"idempotency-key": "mine"}})
    assert "sends Idempotency-Key itself" in message
    assert server.requests == []


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-A": "a\r\nX-Injected: 1"}, "line break"),
        ({"X-A": "caf\u00e9"}, "non-ASCII"),
        ({"Bad Name": "x"}, "not valid"),
        ({"X-A": "1", "x-a": "2"}, "given twice"),
    ],
)
def test_malformed_headers_are_refused(
    server: Server, headers: dict[str, str], message: str
) -> None:
    assert message in refused({"url": f"http://{SERVER_HOST}:{server.port}/", "headers": headers})
    assert server.requests == []


def test_arguments_are_checked_against_the_schema() -> None:
    with pytest.raises(SchemaValidationError):
        call({"url": "http://api.example.com/", "method": "TRACE"})
    with pytest.raises(SchemaValidationError):
        call({"url": "http://api.example.com/", "timeout_s": 0})
    with pytest.raises(SchemaValidationError):
        call({"url": "http://api.example.com/", "headers": {"A": 1}})


# -- the default tool, https and IPv6 -------------------------------------------------------


def test_the_default_http_tool_refuses_everything(server: Server) -> None:
    tool = default_tools.get("http")
    for url in ["https://api.example.com/", f"http://{SERVER_HOST}:{server.port}/echo"]:
        with pytest.raises(ToolError) as caught:
            asyncio.run(tool.call({"url": url}, CTX))
        assert "runtime config" in caught.value.message
    assert server.requests == []


def test_importing_openrooms_does_not_import_httpx() -> None:
    code = "import sys, openrooms, openrooms.tools.http; assert 'httpx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_https_sends_the_host_name_as_sni_while_connecting_to_the_address(
    tmp_path: Path,
) -> None:
    """The TLS server sees ``api.example.com`` although the tool dialled 127.0.0.1; the
    self-signed certificate is then rejected, as it should be."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=api.example.com", "-addext", "subjectAltName=DNS:api.example.com",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    listener = socket.create_server((SERVER_HOST, 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def handshake_once() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client rejects our certificate

    thread = threading.Thread(target=handshake_once)
    thread.start()
    try:
        resolver = RecordingResolver({"api.example.com": [[SERVER_HOST]]})
        message = refused({"url": f"https://api.example.com:{port}/"}, resolver=resolver)
    finally:
        thread.join(10)
        listener.close()
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert names == ["api.example.com"]


@pytest.fixture
def server6() -> Iterator[Server]:
    try:
        server = Server("::1", socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    yield from serve(server)


def test_ipv6_literals_are_bracketed_and_allowed_by_network(server6: Server) -> None:
    url = f"http://[::1]:{server6.port}/echo"
    result = call({"url": url}, policy(allow_networks=("::1/128",)))
    assert result["json"]["headers"]["host"] == f"[::1]:{server6.port}"
    assert "::1 is a loopback address" in refused({"url": url})


# -- credentials stay out of results, outputs and the database --------------------------------

SECRET_TOKEN = "tok-0123456789abcdef"
SECRET_BEARER = "bearer-secret-fedcba9876543210"


def test_the_results_url_hides_credential_query_parameters(server: Server) -> None:
    url = f"http://{SERVER_HOST}:{server.port}/echo?api_key={SECRET_TOKEN}&page=2"
    result = call({"url": url})
    assert server.requests[-1].path == f"/echo?api_key={SECRET_TOKEN}&page=2"  # sent as given
    assert result["url"] == f"http://{SERVER_HOST}:{server.port}/echo?api_key=[redacted]&page=2"


def test_a_rooms_log_state_and_database_never_hold_the_calls_credentials(
    server: Server, tmp_path: Path
) -> None:
    """The result's url, an echoed token and an echoed Authorization header are scrubbed
    from the TOOL_CALLED event, the node's output and the room variable."""
    from openrooms import EventType, RoomStatus, Runtime, serde
    from openrooms.backends import SQLiteStore
    from openrooms.config import RuntimeConfig

    wf = serde.workflow_from_text(
        """
id: fetch-with-credentials
nodes:
  fetch:
    type: tool
    tool: http
    args:
      url: "{{ vars.url }}"
      headers: {Authorization: "Bearer {{ vars.bearer }}"}
    output: page
  done: {type: end}
transitions:
  - {from: fetch, to: done}
"""
    )
    db = tmp_path / "rooms.db"
    store = SQLiteStore(db)
    rt = Runtime(store, store, config=RuntimeConfig(http=policy()))
    url = f"http://{SERVER_HOST}:{server.port}/echo?token={SECRET_TOKEN}"
    room = rt.create_room(wf, {"url": url, "bearer": SECRET_BEARER})
    state = rt.run(room.id)
    assert state.status is RoomStatus.COMPLETED, state.reason
    assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET_BEARER}"
    page = state.variables["page"]
    assert page["url"].endswith("/echo?token=[redacted]")
    assert page["json"]["path"] == "/echo?token=[redacted]"
    assert page["json"]["headers"]["authorization"] == "[redacted]"
    (called,) = rt.events(room.id, types=[EventType.TOOL_CALLED])
    (completed,) = rt.events(room.id, types=[EventType.NODE_COMPLETED])
    for stored in (json.dumps(called.data), json.dumps(completed.data), json.dumps(page)):
        assert SECRET_TOKEN not in stored
        assert SECRET_BEARER not in stored
    rt.close()
    # the variables the room was created with hold them, as given; nothing the call returned
    stored_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("rooms.db*"))
    assert stored_bytes.count(SECRET_BEARER.encode()) <= 2  # ROOM_CREATED event + the state


def test_without_httpx_the_tool_names_its_own_extra() -> None:
    code = (
        "import sys, asyncio; sys.modules['httpx'] = None\n"
        "from openrooms.tools import HttpPolicy, ToolContext, http_tool\n"
        "tool = http_tool(HttpPolicy(allow_hosts=('api.example.com',)))\n"
        "ctx = ToolContext(room_id='r', node='n', idempotency_key='k')\n"
        "asyncio.run(tool.call({'url': 'https://api.example.com/'}, ctx))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 1
    last = ran.stderr.strip().splitlines()[-1]
    assert "MissingExtraError" in last
    assert "to use the http tool, install the 'http' extra: pip install 'openrooms[http]'" in last

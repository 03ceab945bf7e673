"""schemathesis against ``/openapi.json`` on a running ``openrooms serve``.

A real server process on a free loopback port, over a temporary SQLite file, with an API
key set; schemathesis loads the document the server serves, generates requests for every
operation (valid ones and, in its coverage phase, invalid ones), sends them with the key
over HTTP and checks every answer:

- ``not_a_server_error``: no 5xx, ever;
- ``status_code_conformance``: each status is one the operation documents;
- ``content_type_conformance``: the ``Content-Type`` is one the status documents;
- ``response_schema_conformance``: the body matches the documented schema;
- ``response_headers_conformance``: documented headers are there and match;
- ``negative_data_rejection``: a request the document calls invalid gets a 4xx;
- ``missing_required_header``: a request without a required header gets a 4xx;
- ``unsupported_method`` / ``allow_header_conformance``: a method a path does not take
  gets 405 with an ``Allow`` header naming exactly the documented methods;
- ``ignored_auth``: the operations that need the key refuse a request without it.

Left out, on purpose:

- ``positive_data_acceptance`` (a request the schema allows gets a 2xx): the document
  cannot say everything the server checks. A workflow definition is valid only when its
  nodes and transitions make a graph (``invalid_workflow`` lists why it is not), a page
  ``cursor`` only when this server gave it, a room id only when the room exists. JSON
  Schema cannot express those; the 4xx they get is documented and checked above.
- ``use_after_free``, ``ensure_resource_availability``, ``object_level_authorization``:
  stateful checks of resources a client deletes or owns; the API deletes nothing and every
  key sees every room.
- ``max_response_time``: timing on a shared CI machine proves nothing.

``test_every_phase_of_a_schemathesis_run`` also drives schemathesis' own engine (as its CLI
does) through the coverage, fuzzing and stateful phases, with the same checks.

The budget is small for CI (``OPENROOMS_API_FUZZ_EXAMPLES``, default 10 per operation);
``nox -s api_fuzz`` runs it with 300.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks, engine
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events

from openrooms_server.routes_openapi import OPENAPI
from tests.server.server_tools import assert_error
from tests.server.test_e2e_serve import ORDER_YAML, Server, server_env

pytestmark = pytest.mark.slow

KEY = "fuzz-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = int(os.environ.get("OPENROOMS_API_FUZZ_EXAMPLES", "10"))
CHECKS: list[Any] = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.allow_header_conformance,
    checks.ignored_auth,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    server = Server(
        tmp,
        "--db",
        f"sqlite:///{tmp}/rooms.db",
        env=server_env(OPENROOMS_API_KEYS=KEY),
        # the fuzzer sends thousands of requests a minute: the limits are tested elsewhere
        serve_args=("--rate-limit", "1000000", "--room-rate-limit", "1000000"),
    )
    yield server
    server.kill()
    assert "Traceback" not in server.output(), server.output()


@pytest.fixture(scope="module")
def ids(served: Server) -> dict[str, str]:
    """Ids that exist on the server, so that cases reach past the 404 of an unknown id: a
    registered workflow, a room created from it, and a cancelled room (whose log stream
    ends at once)."""
    http = served.http
    yaml = {"content-type": "application/yaml", **AUTH}
    r = http.post("/api/workflows", content=ORDER_YAML, headers=yaml)
    assert r.status_code == 201, r.text
    made = {"workflow": "order_approval"}
    r = http.post("/api/rooms", json={"workflow": "order_approval"}, headers=AUTH)
    assert r.status_code == 201, r.text
    made["room"] = r.json()["id"]
    r = http.post("/api/rooms", json={"workflow": "order_approval"}, headers=AUTH)
    made["ended"] = r.json()["id"]
    assert http.post(f"/api/rooms/{made['ended']}/cancel", headers=AUTH).status_code == 200
    return made


@pytest.fixture(scope="module")
def api(served: Server) -> Any:
    """The document the running server serves, as schemathesis loads it."""
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json", headers=AUTH, timeout=10)


# schemathesis' own pytest integration (``from_fixture``) does not run under pytest 9.2 (it
# sets a Node attribute that is gone), so each operation is a test of ours, drawing cases
# from schemathesis' strategies for it: valid requests, then invalid ones; for an operation
# on an id, once with generated ids and once with one that exists.


def _invalid_request_exists(op: dict[str, Any]) -> bool:
    """Whether an invalid request can be made for *op*: it reads a body, or a query or
    header parameter (its only other input, a path segment, is any non-empty string)."""
    return "requestBody" in op or any(p["in"] != "path" for p in op.get("parameters", ()))


CASES = sorted(
    (path, method.upper(), mode, existing)
    for path, item in OPENAPI["paths"].items()
    for method, op in item.items()
    for mode in ("positive", "negative")
    for existing in ((False, True) if "{id}" in path else (False,))
    if mode == "positive" or _invalid_request_exists(op)
)


def _existing_id(path: str, ids: dict[str, str]) -> str:
    if path.startswith("/api/workflows/"):
        return ids["workflow"]
    if path.endswith("/stream"):
        return ids["ended"]  # a live room's stream runs until the room ends
    return ids["room"]


@pytest.mark.parametrize(("path", "method", "mode", "existing"), CASES)
def test_api_conforms_to_its_document(
    api: Any, ids: dict[str, str], path: str, method: str, mode: str, existing: bool
) -> None:
    operation = api[path][method]
    fixed = {"id": _existing_id(path, ids)} if existing else None
    strategy = operation.as_strategy(generation_mode=GenerationMode(mode), path_parameters=fixed)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same requests every run: a CI failure reproduces locally
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate],  # a failure is reported as found
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=10)

    check()


def test_every_phase_of_a_schemathesis_run(served: Server) -> None:
    """schemathesis' own run, through its Python API (the engine its CLI drives): the
    documented examples, the coverage phase (boundary and invalid values, other methods,
    missing headers), fuzzing, and the stateful phase, which follows the ids one answer
    gives (a room's ``Location``) into the next requests. Every check but
    ``positive_data_acceptance`` (see the module docstring)."""
    config = SchemathesisConfig.from_dict(
        {
            "headers": AUTH,
            "seed": 1,  # the same requests every run
            "generation": {"max-examples": EXAMPLES},
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "request-timeout": 10,
        }
    )
    api = schemathesis.openapi.from_url(
        f"{served.url}/openapi.json", config=config, headers=AUTH, timeout=10
    )
    failures: list[str] = []
    problems: list[str] = []
    phases: dict[str, str] = {}
    finished = None
    for event in engine.from_schema(api).execute():
        if isinstance(event, events.PhaseFinished):
            phases[str(event.phase.name.value)] = str(event.status.value)
        elif isinstance(event, events.ScenarioFinished) and event.status == Status.FAILURE:
            for found in event.recorder.checks.values():
                failures.extend(
                    f"{event.label}: {c.name}: {c.failure_info.failure.title}\n"
                    f"{c.failure_info.failure.message}\n{c.failure_info.code_sample}"
                    for c in found
                    if c.failure_info is not None
                )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            problems.append(repr(event)[:2000])
        elif isinstance(event, events.EngineFinished):
            finished = event
    assert not failures, "\n\n".join(failures[:10])
    assert not problems, problems
    assert finished is not None and not finished.failures
    for phase in ("examples", "coverage", "fuzzing", "stateful"):
        assert phases.get(phase) == "success", phases


ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@pytest.mark.parametrize("path", sorted(OPENAPI["paths"]))
def test_a_method_a_path_does_not_take_gets_405_naming_those_it_does(
    served: Server, path: str
) -> None:
    """Regression: ``GET`` and ``POST /api/rooms`` were two routes, and Starlette answered
    ``DELETE /api/rooms`` from the first alone: ``Allow: POST``."""
    documented = {m.upper() for m in OPENAPI["paths"][path]}
    allowed = documented | ({"HEAD"} if "GET" in documented else set())
    url = path.replace("{id}", "some-id")
    for method in sorted(set(ALL_METHODS) - allowed):
        r = served.http.request(method, url, headers=AUTH)
        if method == "HEAD":  # no body
            assert r.status_code == 405, r.text
        else:
            assert_error(r, 405, "method_not_allowed")
        assert {m.strip() for m in r.headers["allow"].split(",")} == allowed, (method, path)

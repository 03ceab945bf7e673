"""/openapi.json is kept true: every route the app answers is documented, every documented
route exists, with its path parameters, its responses, and $refs that resolve."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from openrooms_server import Settings, create_app
from openrooms_server.app import routes_of
from openrooms_server.dashboard import dashboard_routes
from openrooms_server.errors import CODES, ERROR_TABLE
from openrooms_server.routes_openapi import OPENAPI

METHODS = {"get", "post", "put", "patch", "delete"}


def documented() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    pages = set(routes_of(Starlette(routes=dashboard_routes())))  # HTML, not the API
    served = set(routes_of(create_app(Settings(env={})))) - pages
    assert served, "the router introspection found no routes"
    assert served - documented() == set(), "routes missing from /openapi.json"
    assert documented() - served == set(), "documented routes the app does not have"


@pytest.mark.parametrize(("path", "method"), sorted(documented()))
def test_each_operation_is_complete(path: str, method: str) -> None:
    op = OPENAPI["paths"][path][method.lower()]
    assert op["summary"] and op["operationId"]
    assert any(code.startswith("2") for code in op["responses"])
    declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
    assert declared == set(re.findall(r"{(\w+)}", path))
    if method == "POST":
        assert "requestBody" in op
    for status, response in op["responses"].items():
        if not status.startswith("2"):
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_refs_resolve_and_schemas_are_valid_json_schema() -> None:
    for ref in refs(OPENAPI):
        name = ref.removeprefix("#/components/schemas/")
        assert name in OPENAPI["components"]["schemas"], ref
    for schema in OPENAPI["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_every_code_of_the_table_is_documented() -> None:
    assert {code for _, _, code in ERROR_TABLE} <= set(CODES)
    codes = OPENAPI["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert set(codes["code"]["enum"]) == set(CODES)
    page = (Path(__file__).parents[2] / "docs" / "server.md").read_text(encoding="utf-8")
    for code in CODES:
        assert f"`{code}`" in page, f"docs/server.md does not list {code}"


def test_served_document_is_the_one_in_the_code(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(db=f"sqlite:///{tmp_path}/r.db", env={}))) as c:
        r = c.get("/openapi.json")
    assert r.status_code == 200 and r.json() == OPENAPI
    assert r.json()["openapi"].startswith("3.1")


@pytest.mark.parametrize(("path", "method"), sorted(documented()))
def test_the_guards_answers_are_documented(path: str, method: str) -> None:
    """401 and 429 can answer every operation but /health (which needs no key and is never
    limited); 413 every one that reads a body; the key is the document's security scheme."""
    op = OPENAPI["paths"][path][method.lower()]
    if path == "/health":
        assert op["security"] == [] and "401" not in op["responses"]
    else:
        assert "security" not in op  # the document's: {"apiKey": []}
        assert {"401", "429"} <= set(op["responses"])
        assert "Retry-After" in op["responses"]["429"]["headers"]
    if "requestBody" in op:
        assert "413" in op["responses"]
    assert OPENAPI["security"] == [{"apiKey": []}]
    assert OPENAPI["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


@pytest.mark.parametrize(("path", "method"), sorted(documented()))
def test_routes_take_exactly_the_documented_query_parameters(
    tmp_path: Path, path: str, method: str
) -> None:
    """Every documented query parameter is taken (never refused as unknown), and one that
    is not documented is refused: the routes read the list from this document."""
    op = OPENAPI["paths"][path][method.lower()]
    names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
    url = path.replace("{id}", "nope")
    with TestClient(create_app(Settings(db=f"sqlite:///{tmp_path}/r.db", env={}))) as c:
        for name in names:
            r = c.request(method, url, params={name: "x"})
            problems = (r.json().get("error") or {}).get("details") or {}
            assert "is not a query parameter" not in str(problems), (name, r.text)
        if path.startswith("/api/"):
            r = c.request(method, url, params={"undocumented": "1"})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["details"]["problems"][0]["path"] == "undocumented"

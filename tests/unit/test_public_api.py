"""The public surface: a sorted, resolvable ``__all__``, a light import, no eval/exec/pickle."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import openrooms

ROOT = Path(__file__).parents[2]
PACKAGES = [ROOT / "openrooms", ROOT / "openrooms_server"]
SOURCES = sorted(p for pkg in PACKAGES if pkg.is_dir() for p in pkg.rglob("*.py"))

# the extras: importing the library must not pull any of them in
OPTIONAL = ["litellm", "redis", "psycopg", "rq", "starlette", "httpx", "uvicorn"]


def test_all_is_sorted_unique_and_every_name_resolves() -> None:
    names = openrooms.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(openrooms, name) is not None, name


def test_every_public_class_and_function_is_exported() -> None:
    """Nothing public defined in the package's own modules is left out of ``__all__``."""
    exported = set(openrooms.__all__)
    public = {
        name
        for name, value in vars(openrooms).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("openrooms.")
        and callable(value)
    }
    assert public <= exported, sorted(public - exported)


def package_modules() -> list[str]:
    found = []
    for pkg in ("openrooms",):
        module = importlib.import_module(pkg)
        found.append(pkg)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{pkg}."):
            found.append(info.name)
    return sorted(found)


def module_all(name: str) -> list[str] | None:
    """A module's ``__all__`` read from its source, without importing it."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return None


@pytest.mark.parametrize("name", package_modules())
def test_every_modules_all_is_unique_and_resolves(name: str) -> None:
    names = module_all(name)
    if names is None:
        pytest.skip(f"{name} declares no __all__")
    assert len(names) == len(set(names)), name
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # a module for an extra that is not installed here
        if exc.name not in OPTIONAL:
            raise
        pytest.skip(f"{name} needs {exc.name}")
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names {missing}, which it does not define"


def imported_after(statement: str) -> set[str]:
    """The top-level modules present in a fresh interpreter after *statement*."""
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    return {m.split(".")[0] for m in json.loads(out)}


@pytest.mark.parametrize(
    "statement",
    [
        "import openrooms",
        "import openrooms.cli",
        "from openrooms import open_runtime; open_runtime('memory://').close()",
    ],
)
def test_importing_the_library_does_not_import_any_extra(statement: str) -> None:
    loaded = imported_after(statement)
    assert "openrooms" in loaded  # the probe itself works
    assert loaded.isdisjoint(OPTIONAL), sorted(loaded & set(OPTIONAL))


FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}


def forbidden_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"{where}: calls {func.id}()")
            # builtins.eval(...), getattr(builtins, "exec")(...)
            if isinstance(func, ast.Attribute) and func.attr in FORBIDDEN_CALLS - {"compile"}:
                found.append(f"{where}: calls .{func.attr}()")
            if (
                isinstance(func, ast.Name)
                and func.id == "getattr"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in FORBIDDEN_CALLS
            ):
                found.append(f"{where}: getattr(..., {node.args[1].value!r})")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}: imports {alias.name}")
        elif (
            isinstance(node, ast.ImportFrom)
            and (node.module or "").split(".")[0] in FORBIDDEN_MODULES
        ):
            found.append(f"{where}: imports from {node.module}")
    return found


def test_the_scanner_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import pickle\nfrom marshal import loads\nimport builtins, re\n"
        "eval('1')\nbuiltins.exec('x = 1')\ncompile('1', 'f', 'exec')\n"
        "getattr(builtins, 'eval')\nre.compile('x')\n"
    )
    assert sorted(line.split(":")[1] for line in forbidden_uses(sample)) == [
        "1",
        "2",
        "4",
        "5",
        "6",
        "7",
    ]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_uses_eval_exec_or_pickle(path: Path) -> None:
    assert forbidden_uses(path) == []


def test_the_sources_were_found() -> None:
    assert ROOT / "openrooms" / "expressions" / "_parser.py" in SOURCES
    assert ROOT / "openrooms" / "cli.py" in SOURCES

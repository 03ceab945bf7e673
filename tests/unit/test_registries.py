"""Registries belong to the runtime, and plugins fill them through one hook."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from openrooms import (
    NodeContext,
    NodeExecutor,
    Outcome,
    PluginError,
    Registries,
    RoomStatus,
    Workflow,
    WorkflowBuilder,
    WorkflowValidationError,
    open_runtime,
    tool,
)
from openrooms.backends import MemoryStore, default_backends
from openrooms.cli import cli
from openrooms.config import RuntimeConfig
from openrooms.errors import BackendConfigError, SchemaValidationError
from openrooms.llm.registry import default_models
from openrooms.nodes import node_types
from openrooms.registries import load_plugins, open_registries
from openrooms.testing import ScriptedModel
from openrooms.tools import default_tools

ROOT = Path(__file__).parents[2]


class Shout(NodeExecutor):
    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome.ok(str(ctx.variables["text"]).upper())


def double(n: int) -> int:
    """Twice n."""
    return n * 2


def shouting() -> WorkflowBuilder:
    return (
        WorkflowBuilder("shouting", variables={"text": "hi"})
        .node("loud", "shout", output="said")
        .tool("twice", "double", {"n": 21}, output="n")
        .end("done")
        .transitions(("loud", "twice"), ("twice", "done"))
    )


def test_registering_on_one_runtime_never_reaches_another() -> None:
    with open_runtime("memory://") as one, open_runtime("memory://") as other:
        one.node_types.register("shout", Shout())
        tool(registry=one.tools)(double)
        one.models.register_provider("scripted", ScriptedModel([]))
        one.backends.register("nowhere", lambda url: MemoryStore())

        assert "shout" in one.node_types and "shout" not in other.node_types
        assert "double" in one.tools and "double" not in other.tools
        assert "scripted" in one.models and "scripted" not in other.models
        assert "nowhere" in one.backends and "nowhere" not in other.backends
        # nor the defaults the next runtime starts from
        assert "shout" not in node_types and "double" not in default_tools
        assert "scripted" not in default_models and "nowhere" not in default_backends

        room = one.run(one.create_room(shouting()).room_id)
        assert room.status is RoomStatus.COMPLETED
        assert room.variables == {"text": "hi", "said": "HI", "n": 42}
        with pytest.raises(WorkflowValidationError) as info:
            other.create_room(shouting())
        paths = [p.path for p in info.value.problems]
        assert paths == ["nodes.loud.type", "nodes.twice.tool"]


def test_a_workflow_is_checked_against_the_registries_it_is_built_with() -> None:
    regs = Registries()
    regs.node_types.register("shout", Shout())
    tool(registry=regs.tools)(double)
    wf = shouting().build(registries=regs)
    assert wf.plan.nodes["loud"].executor is regs.node_types.get("shout")
    assert Workflow.from_dict(wf.to_dict(), registries=regs) == wf
    with pytest.raises(WorkflowValidationError, match="unknown node type 'shout'"):
        Workflow.from_dict(wf.to_dict())  # the defaults know neither


def test_a_stored_workflow_is_rebuilt_with_the_runtimes_registries(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    with open_runtime(db) as first:
        first.node_types.register("shout", Shout())
        tool(registry=first.tools)(double)
        room = first.create_room(shouting())
    bare = open_runtime(db)
    with bare, pytest.raises(WorkflowValidationError, match="unknown node type 'shout'"):
        bare.run(room.room_id)
    with open_runtime(db) as second:
        second.node_types.register("shout", Shout())
        tool(registry=second.tools)(double)
        assert second.run(room.room_id).variables["said"] == "HI"


def test_builtin_types_and_tools_are_registered_by_name_and_imported_on_first_use() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from openrooms.registries import Registries
        regs = Registries()
        names = (regs.node_types.names(), regs.tools.names())
        watched = ("openrooms.nodes.", "openrooms.tools.", "jsonschema")
        before = sorted(m for m in sys.modules if m.startswith(watched))
        regs.node_types.get("agent"), regs.tools.get("http")
        heavy = ("openrooms.nodes.agent", "openrooms.tools.http")
        after = sorted(m for m in sys.modules if m in heavy)
        print(json.dumps([names, before, after]))
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    (types, tools), before, after = json.loads(ran.stdout)
    assert {"set", "agent", "map", "end"} <= set(types)
    assert {"calculator", "http", "memory_query"} <= set(tools)
    assert before == [
        "openrooms.nodes.base",
        "openrooms.nodes.registry",
        "openrooms.tools.base",
        "openrooms.tools.registry",
    ]
    assert after == ["openrooms.nodes.agent", "openrooms.tools.http"]


# --- plugins --------------------------------------------------------------------------------


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for this test's plugin modules, forgotten afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("OPENROOMS_PLUGINS", raising=False)
    yield folder
    for name in [
        n for n, m in sys.modules.items() if str(folder) in str(getattr(m, "__file__", ""))
    ]:
        del sys.modules[name]


def write_plugin(folder: Path, name: str, body: str) -> str:
    (folder / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return name


SHOUT_PLUGIN = """
    from openrooms import NodeExecutor, Outcome, tool
    from openrooms.backends import MemoryStore

    class Shout(NodeExecutor):
        async def execute(self, ctx):
            return Outcome.ok(str(ctx.variables["text"]).upper())

    def double(n: int) -> int:
        '''Twice n.'''
        return n * 2

    SHARED = MemoryStore()
    calls = []

    def register(registries):
        calls.append(registries)
        registries.node_types.register("shout", Shout())
        tool(registry=registries.tools)(double)
        registries.backends.register("plugged", lambda url: SHARED)
"""


def test_open_runtime_loads_a_plugin_into_that_runtime_only(plugins: Path) -> None:
    name = write_plugin(plugins, "shout_plugin_a", SHOUT_PLUGIN)
    # the plugin's backend scheme opens the runtime's store: plugins load before backends
    with open_runtime("plugged://", plugins=[name]) as rt, open_runtime("memory://") as bare:
        assert rt.registries.plugins == [name]
        assert rt.run(rt.create_room(shouting()).room_id).variables["said"] == "HI"
        assert "shout" not in bare.node_types and "double" not in bare.tools
    module = sys.modules[name]
    assert module.calls == [rt.registries]
    assert rt.states is module.SHARED


def test_plugins_load_from_the_config_then_the_environment_then_the_argument(
    plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = """
        import builtins
        def register(registries):
            registries.node_types.names()  # the hook gets the registries to fill
            builtins.__dict__.setdefault("_openrooms_test_order", []).append(__name__)
    """
    for name in ("p_config", "p_env1", "p_env2", "p_arg"):
        write_plugin(plugins, name, body)
    monkeypatch.setenv("OPENROOMS_PLUGINS", " p_env1, ,p_env2 ")
    import builtins

    monkeypatch.setattr(builtins, "_openrooms_test_order", [], raising=False)
    config = RuntimeConfig.from_dict({"plugins": ["p_config"]})
    regs = open_registries(["p_arg", "p_env1"], config=config)
    assert regs.plugins == ["p_config", "p_env1", "p_env2", "p_arg"]  # each once
    assert builtins._openrooms_test_order == regs.plugins  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (None, "ModuleNotFoundError: No module named 'bad_plugin'"),
        ("x = 1\n", "it has no register() hook"),
        ("register = 'not a function'\n", "it has no register() hook"),
        ("raise RuntimeError('broken at import')\n", "RuntimeError: broken at import"),
        (
            "def register(registries):\n    registries.tools.get('nope')\n",
            "its register() hook raised ToolNotFoundError: unknown tool 'nope'",
        ),
    ],
    ids=["missing module", "no hook", "hook not callable", "import raises", "hook raises"],
)
def test_a_bad_plugin_is_a_plugin_error_naming_it(
    plugins: Path, body: str | None, problem: str
) -> None:
    if body is not None:
        write_plugin(plugins, "bad_plugin", body)
    with pytest.raises(PluginError) as info:
        open_runtime("memory://", plugins=["bad_plugin"])
    assert info.value.plugin == "bad_plugin"
    assert str(info.value).startswith("cannot load plugin 'bad_plugin': ")
    assert problem in str(info.value)
    assert isinstance(info.value, ValueError)  # the CLI's exit status 2


def test_a_plugin_is_loaded_once_per_registries(plugins: Path) -> None:
    name = write_plugin(plugins, "shout_plugin_b", SHOUT_PLUGIN)
    regs = Registries()
    load_plugins(regs, [name, name])
    load_plugins(regs, [name])
    assert len(sys.modules[name].calls) == 1
    other = write_plugin(plugins, "other_plugin", "def register(registries):\n    pass\n")
    with open_runtime("memory://", registries=regs, plugins=[name, other]) as rt:
        assert rt.registries is regs and regs.plugins == [name, other]
    assert len(sys.modules[name].calls) == 1


def test_the_config_file_names_plugins_and_bad_entries_are_refused() -> None:
    assert RuntimeConfig.from_dict({"plugins": ["a", "pkg.mod"]}).plugins == ("a", "pkg.mod")
    with pytest.raises(SchemaValidationError) as info:
        RuntimeConfig.from_dict({"plugins": ["ok", "not a module", 3]})
    assert [p.path for p in info.value.problems] == ["plugins[1]", "plugins[2]"]
    with pytest.raises(SchemaValidationError, match="plugins: expected a list of module names"):
        RuntimeConfig.from_dict({"plugins": "acme"})


def test_the_cli_loads_plugins_from_the_option_the_environment_and_the_config(
    plugins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_plugin(plugins, "shout_plugin_c", SHOUT_PLUGIN)
    flow = tmp_path / "flow.yaml"
    flow.write_text(json.dumps(shouting().build(registries=_shout_registries()).to_dict()))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    refused = runner.invoke(cli, ["--db", db, "validate", str(flow)])
    assert refused.exit_code == 2 and "unknown node type 'shout'" in refused.output
    by_option = runner.invoke(cli, ["--db", db, "--plugin", "shout_plugin_c", "run", str(flow)])
    assert by_option.exit_code == 0, by_option.output
    monkeypatch.setenv("OPENROOMS_PLUGINS", "shout_plugin_c")
    assert runner.invoke(cli, ["--db", db, "validate", str(flow)]).exit_code == 0
    monkeypatch.delenv("OPENROOMS_PLUGINS")
    config = tmp_path / "settings.yaml"
    config.write_text("plugins: [shout_plugin_c]\n")
    by_config = runner.invoke(cli, ["--db", db, "--config", str(config), "graph", str(flow)])
    assert by_config.exit_code == 0, by_config.output


def test_the_cli_reports_a_plugin_without_a_hook_in_one_line(plugins: Path) -> None:
    write_plugin(plugins, "hookless", "x = 1\n")
    result = CliRunner().invoke(cli, ["--plugin", "hookless", "tools"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: cannot load plugin 'hookless': it has no register()")
    assert "Traceback" not in result.output


def _shout_registries() -> Registries:
    regs = Registries()
    regs.node_types.register("shout", Shout())
    tool(registry=regs.tools)(double)
    return regs


@pytest.fixture
def no_backend_leak() -> Iterator[None]:
    yield
    assert "nowhere" not in default_backends


def test_an_unknown_scheme_lists_the_runtimes_schemes(no_backend_leak: None) -> None:
    regs = Registries()
    regs.backends.register("nowhere", lambda url: MemoryStore())
    with open_runtime("nowhere://x", registries=regs) as rt:
        assert isinstance(rt.states, MemoryStore)
    with pytest.raises(BackendConfigError, match="unknown backend scheme 'nowhere'"):
        open_runtime("nowhere://x")


def test_the_module_level_helpers_reach_only_runtimes_opened_afterwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``@tool`` and ``register_node_type`` without a registry change the process-wide
    defaults: a runtime already open keeps what it had, the next one starts with them."""
    from openrooms import register_node_type

    monkeypatch.setattr(default_tools, "_tools", dict(default_tools._tools))  # put back after
    monkeypatch.setattr(node_types, "_executors", dict(node_types._executors))
    with open_runtime("memory://") as before:
        tool(double)
        register_node_type("shout", Shout())
        with open_runtime("memory://") as after:
            assert "double" in after.tools and "shout" in after.node_types
            assert after.run(after.create_room(shouting()).room_id).variables["n"] == 42
        assert "double" not in before.tools and "shout" not in before.node_types
        shouting().build()  # outside a runtime: checked against the defaults


@pytest.mark.parametrize("name", ["plugins/tools.py", "..up", "a b", "x.", "\udcff"])
def test_a_plugin_named_by_anything_but_an_import_name_is_refused_before_importing(
    name: str,
) -> None:
    with pytest.raises(PluginError, match="import name, dotted like") as info:
        open_runtime("memory://", plugins=[name])
    assert info.value.plugin == name

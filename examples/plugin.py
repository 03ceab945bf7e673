"""A plugin: a module whose `register(registries)` hook adds a tool and a node type.

A runtime loads it by name, into its own registries only. From the repository root
(offline: no key, no network; an in-memory database):

    python examples/plugin.py               # a runtime with the plugin, and one without

The CLI and `open_runtime()` load plugins the same way: named in the config file
(`plugins: [plugin]`), in OPENROOMS_PLUGINS, or with `--plugin`, e.g.
`PYTHONPATH=examples openrooms --plugin plugin run flow.yaml`.
"""

from __future__ import annotations

from openrooms import (
    NodeContext,
    NodeExecutor,
    Outcome,
    Registries,
    WorkflowBuilder,
    WorkflowValidationError,
    open_runtime,
    tool,
)


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


class Shout(NodeExecutor):
    """``shout``: the ``text`` variable in capitals."""

    labels = frozenset({"ok"})

    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome.ok(str(ctx.variables["text"]).upper())


def register(registries: Registries) -> None:
    """The hook a runtime calls with its registries when it loads this plugin."""
    tool(registry=registries.tools)(word_count)
    registries.node_types.register("shout", Shout())


def main() -> None:
    flow = (
        WorkflowBuilder("loud", variables={"text": "hello, world"})
        .node("shout", "shout", output="loud")
        .tool("count", "word_count", {"text": "{{ vars.loud }}"}, output="words")
        .end("done")
        .transitions(("shout", "count"), ("count", "done"))
    )
    # run as a script, this file is __main__; the runtime imports it as `plugin`
    with open_runtime("memory://", plugins=["plugin"]) as rt:
        room = rt.run(rt.create_room(flow).room_id)
        print(f"with the plugin: {room.variables['loud']} -> {room.variables['words']} words")
    with open_runtime("memory://") as bare:
        try:
            bare.create_room(flow)
        except WorkflowValidationError as exc:
            print(f"without it: {exc.problems[0]}")


if __name__ == "__main__":
    main()

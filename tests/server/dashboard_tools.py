"""Tools for the dashboard tests, loaded with ``plugins=("tests.server.dashboard_tools",)``:
each puts a hostile string somewhere the dashboard shows (a tool's name and description, its
result, its error message)."""

from __future__ import annotations

from typing import Final

from openrooms.registries import Registries
from openrooms.tools.registry import tool

HOSTILE: Final = "<img src=x onerror=alert(1)>\"'><script>alert(2)</script>&lt;b&gt;"
"""Markup that would run (or show as markup) if the dashboard ever rendered data as HTML."""


def register(registries: Registries) -> None:
    """The plugin hook: ``echo_hostile``, ``fail_hostile`` and a tool named HOSTILE."""

    @tool(registry=registries.tools, name="echo_hostile", description=HOSTILE)
    def echo_hostile() -> str:
        return HOSTILE

    @tool(registry=registries.tools, name="fail_hostile")
    def fail_hostile() -> str:
        """Fail with a hostile message."""
        raise ValueError(HOSTILE)

    @tool(registry=registries.tools, name=HOSTILE, description="a tool with a hostile name")
    def named_hostile(note: str) -> str:
        return note

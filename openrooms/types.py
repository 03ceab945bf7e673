"""Shared type aliases used across the package."""

from __future__ import annotations

from typing import Any, NewType, TypeAlias

__all__ = ["JSONObject", "JSONValue", "RoomId"]

RoomId = NewType("RoomId", str)
"""The id of a room: a time-ordered hex string made by the runtime."""

JSONValue: TypeAlias = Any
"""Any value that survives ``json.dumps``: None, bool, int, float, str, list, dict with str keys.

Kept as ``Any`` on purpose: it is the serialization edge, and values are checked
where they enter (variables, inputs, tool results) rather than by the type system.
"""

JSONObject: TypeAlias = dict[str, Any]
"""A JSON object: variables, event data, node configuration."""

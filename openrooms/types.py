"""Shared type aliases used across the package."""

from __future__ import annotations

from typing import NewType

__all__ = ["RoomId"]

RoomId = NewType("RoomId", str)
"""The id of a room: a time-ordered hex string made by the runtime."""

"""Optional dependencies, imported only when a feature that needs them is used."""

from __future__ import annotations

import importlib
from types import ModuleType

from openrooms.errors import MissingExtraError

__all__ = ["require"]


def require(module: str, *, feature: str, extra: str) -> ModuleType:
    """Import *module*, or say which extra brings it.

    Example::

        psycopg = require("psycopg", feature="the postgresql:// backend", extra="postgres")

    Raises:
        MissingExtraError: *module* is not installed; the message names the
            ``pip install 'openrooms[extra]'`` to run.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".", 1)[0]
        if exc.name is not None and exc.name.split(".", 1)[0] != top:
            raise  # the module is there but one of *its* imports is broken: show that
        raise MissingExtraError(feature, extra) from exc

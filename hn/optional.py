"""Importing the capability modules that may be left out of an installation."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(name: str) -> ModuleType | None:
    """The module ``name``, or None when that module itself is absent.

    A missing dependency *inside* the module is a real error and is raised.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise

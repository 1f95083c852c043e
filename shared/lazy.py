"""Package attributes imported from their submodule on first use (PEP 562), for packages whose submodules are
costly to import at cold start and not all needed by every function."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_getattr(
    package: str, namespace: MutableMapping[str, Any], submodule_of: Mapping[str, str]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``submodule_of[name]`` once and caches it in the package."""

    def __getattr__(name: str) -> Any:
        module = submodule_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__

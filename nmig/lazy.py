"""Names of a package imported on first use: `nmig.exporter` and `nmig.importer` publish their API this way,
so that importing the package (for a name check, for `--help`) does not import the clients behind it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, public: dict[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `public[name]` = (module, attribute) when asked."""

    def __getattr__(name: str) -> Any:
        try:
            module, attribute = public[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(module), attribute)

    return __getattr__

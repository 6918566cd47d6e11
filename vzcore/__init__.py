"""vzcore: exact, fast Value Zeroing and context-mixing baselines for Transformers.

The names below load on first use (PEP 562), so that `import vzcore.store` — reading a store, as a
viewer or an aggregator does — never loads torch or transformers, while `vzcore.score` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "ModelHandle",
    "ModelNotFoundError",
    "ScoreResult",
    "UnknownMethodError",
    "UnsupportedModelError",
    "WordResult",
    "keep_freed_memory",
    "list_families",
    "list_methods",
    "load_model",
    "locate_model",
    "open_store",
    "register_method",
    "score",
]

# Where each public name lives.
_HOMES = {
    "keep_freed_memory": "vzcore.allocator",
    "score": "vzcore.api",
    "UnsupportedModelError": "vzcore.families",
    "list_families": "vzcore.families",
    "ModelHandle": "vzcore.loading",
    "ModelNotFoundError": "vzcore.loading",
    "load_model": "vzcore.loading",
    "locate_model": "vzcore.loading",
    "UnknownMethodError": "vzcore.methods",
    "list_methods": "vzcore.methods",
    "register_method": "vzcore.methods",
    "ScoreResult": "vzcore.result",
    "WordResult": "vzcore.result",
    "open_store": "vzcore.store.reader",
}

if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from vzcore.allocator import keep_freed_memory
    from vzcore.api import score
    from vzcore.families import UnsupportedModelError, list_families
    from vzcore.loading import ModelHandle, ModelNotFoundError, load_model, locate_model
    from vzcore.methods import UnknownMethodError, list_methods, register_method
    from vzcore.result import ScoreResult, WordResult
    from vzcore.store.reader import open_store


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        if name in ("methods", "families", "store", "queries", "statistics", "evaluation", "ops", "seq2seq", "spans"):
            return importlib.import_module(f"vzcore.{name}")  # `vzcore.methods.get_method` without importing it
        raise AttributeError(f"module 'vzcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

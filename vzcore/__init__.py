"""vzcore: exact, fast Value Zeroing and context-mixing baselines for Transformers."""

from vzcore.allocator import keep_freed_memory
from vzcore.api import score
from vzcore.families import UnsupportedModelError, list_families
from vzcore.loading import ModelHandle, ModelNotFoundError, load_model, locate_model
from vzcore.methods import UnknownMethodError, list_methods, register_method
from vzcore.result import ScoreResult, WordResult
from vzcore.store.reader import open_store

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

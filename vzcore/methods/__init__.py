"""Registered scoring methods; importing this package registers the built-in ones."""

from vzcore.methods import alti, attention, attention_norm, gradients, norm_based, value_zeroing
from vzcore.methods.registry import Method, UnknownMethodError, get_method, list_methods, register_method

__all__ = [
    "Method",
    "UnknownMethodError",
    "alti",
    "attention",
    "attention_norm",
    "get_method",
    "gradients",
    "list_methods",
    "norm_based",
    "register_method",
    "value_zeroing",
]

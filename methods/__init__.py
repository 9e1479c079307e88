"""Inpainting methods behind one interface: the `Inpainter` protocol and its registry."""

from methods.base import Family, Inpainter, MethodUnavailable, Resolution, check_image_mask
from methods.registry import (
    MethodInfo,
    available_methods,
    create_method,
    get_method_class,
    list_methods,
    register_method,
)

__all__ = [
    "Family",
    "Inpainter",
    "MethodInfo",
    "MethodUnavailable",
    "Resolution",
    "available_methods",
    "check_image_mask",
    "create_method",
    "get_method_class",
    "list_methods",
    "register_method",
]

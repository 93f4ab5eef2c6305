"""Unlearning methods. Importing this package registers every method (explicit imports, style P2)."""

from tinymem.mitigations.unlearning import balanced_subnet  # noqa: F401
from tinymem.mitigations.unlearning.registry import (
    REGISTRY,
    UnlearnMethod,
    UnlearnOutput,
    UnlearnTask,
    config_from_dict,
    config_to_dict,
    get,
    register,
)

__all__ = [
    "REGISTRY",
    "UnlearnMethod",
    "UnlearnOutput",
    "UnlearnTask",
    "config_from_dict",
    "config_to_dict",
    "get",
    "register",
]

"""Model families, one file each; importing this package registers every builder they define."""

import importlib
import pkgutil

from dlparts.models.registry import ModelInfo, create_model, get_model_info, list_models, register_model

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]

"""dlparts: the classic parts of deep learning for vision and 3-D point clouds, faithful to the papers and fast.

The top-level names are loaded on first use, so ``import dlparts`` (and ``dlparts conv``) does not pay for importing
torch and every model family.
"""

from dlparts.errors import DlpartsError

__version__ = "0.1.0"

_LAZY = {
    "create_model": "dlparts.models.registry",
    "get_model_info": "dlparts.models.registry",
    "list_models": "dlparts.models.registry",
    "register_model": "dlparts.models.registry",
    "summarize": "dlparts.summary",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlparts' has no attribute {name!r}")


__all__ = ["DlpartsError", "__version__", *_LAZY]

"""dlparts: the classic parts of deep learning for vision and 3-D point clouds, faithful to the papers and fast.

The top-level names are loaded on first use, so ``import dlparts`` (and ``dlparts conv``) does not pay for importing
torch and every model family.
"""

import os

from dlparts.errors import DlpartsError

# torch's OpenMP workers busy-wait after each parallel region before they sleep (GNU libgomp, in the pip wheels:
# 300,000 spins, milliseconds); dlparts' numba kernels run on threads of their own right after such regions and then
# share the cores with them: on 2 cores a PointNet++ training step burnt a third of its CPU time so, and ran slower.
# OpenMP reads this when torch is first imported, so it counts where dlparts is imported first, as the ``dlparts``
# command is; a value of the user's own (or GOMP_SPINCOUNT, which libgomp puts first) is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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

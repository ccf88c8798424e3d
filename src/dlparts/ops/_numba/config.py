"""Numba setup shared by every kernel of dlparts: the threading layer, the kernel constants, the package-keyed cache.

Numba's ``cache=True`` stamps a function's cached machine code with the source of the file that defines it only; a
kernel that inlines a primitive from another file would keep its stale machine code after the primitive changes.
:func:`kernel` is ``njit`` with a cache whose stamp is a hash of every ``*.py`` file of this package, so any edit to
any of them recompiles every kernel here.  The first compile of a process prints one line to stderr
(:data:`COMPILE_NOTICE`), so a first call that takes a minute does not look hung.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

import numba
from numba.core import caching, types

# Fast-math flags that leave finite results unchanged; "contract" (FMA) and "reassoc" would change distances.
FASTMATH = {"nnan", "ninf", "nsz"}
# Points per block: distances of a block are computed in one vectorized loop, then scanned.
BLOCK = 64
# Points per block of the kNN scan (most blocks are skipped after one vectorized count).
KNN_BLOCK = 256
# Values per block of the FPS maximum search.
ARGMAX_BLOCK = 256
# Query points per parallel task.
QUERY_CHUNK = 64

PACKAGE_DIR = Path(__file__).resolve().parent


def configure() -> None:
    """Choose numba's threading layer before the first parallel kernel runs (idempotent).

    Numba's OpenMP layer shares libgomp with torch, whose spinning pool then fights the kernels for the same cores;
    the ``workqueue`` layer does not.  Setting ``NUMBA_THREADING_LAYER`` overrides this choice.
    """
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"


@functools.lru_cache(maxsize=None)
def package_stamp(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the names and bytes of every ``*.py`` file in ``package_dir``, in name order."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class _PackageStamp:
    """Locator mixin: the freshness stamp of a kernel is the stamp of the package its file belongs to."""

    def get_source_stamp(self):
        return package_stamp(Path(self._py_file).resolve().parent)


class _UserProvidedLocator(_PackageStamp, caching.UserProvidedCacheLocator):
    pass


class _InTreeLocator(_PackageStamp, caching.InTreeCacheLocator):
    pass


class _UserWideLocator(_PackageStamp, caching.UserWideCacheLocator):
    pass


class _PackageCacheImpl(caching.CompileResultCacheImpl):
    # numba's own order of places (NUMBA_CACHE_DIR, __pycache__ beside the file, the user's cache directory)
    _locator_classes = [_UserProvidedLocator, _InTreeLocator, _UserWideLocator]


# The line printed once per process when a kernel misses the on-disk cache and numba compiles it.
COMPILE_NOTICE = ("dlparts: compiling numba CPU kernels for their first use (once per install or upgrade, cached on "
                  "disk; this can take a minute)")
_noticed = False


def _notice_compile() -> None:
    global _noticed
    if not _noticed:
        _noticed = True
        print(COMPILE_NOTICE, file=sys.stderr, flush=True)


class _PackageCache(caching.FunctionCache):
    _impl_class = _PackageCacheImpl

    def load_overload(self, sig, target_context):
        # numba compiles right after a miss here; a hit (the usual case) stays silent.
        cres = super().load_overload(sig, target_context)
        if cres is None:
            _notice_compile()
        return cres


def _one_signature_per_type(dispatcher) -> None:
    """Compile ``dispatcher``'s calls from other kernels for the plain types of their arguments: numba would compile a
    separate copy for each constant argument it can see (``Literal[int](0)`` beside ``int64``), more compile time on
    first use for the same machine code once LLVM has inlined the call."""
    call_template = dispatcher.get_call_template

    def plain_call_template(args, kws):
        return call_template(tuple(map(types.unliteral, args)), {k: types.unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = plain_call_template


def kernel(*, parallel: bool = False, fastmath=False):
    """``numba.njit(parallel=..., fastmath=...)`` cached on disk under the package stamp (module docstring), compiled
    once per plain argument type (:func:`_one_signature_per_type`)."""

    def wrap(fn):
        dispatcher = numba.njit(parallel=parallel, fastmath=fastmath)(fn)
        # What njit(cache=True) does (Dispatcher.enable_caching), with our cache class in place of FunctionCache.
        dispatcher._cache = _PackageCache(fn)
        _one_signature_per_type(dispatcher)
        return dispatcher

    return wrap

"""The numba CPU kernels of :mod:`dlparts.ops`, in layers that import one way only.

- :mod:`~dlparts.ops._numba.config`: numba's threading layer (:func:`~dlparts.ops._numba.config.configure`), the
  kernel constants and :func:`~dlparts.ops._numba.config.kernel`, the ``njit`` whose on-disk cache is keyed on the
  source of this whole package.
- :mod:`~dlparts.ops._numba.primitives`: the leaf: distance blocks, minimum updates, the first arg-max, sort keys of
  (distance, index), the finish of a ball, the uniform grid.
- :mod:`~dlparts.ops._numba.scan` (brute-force scans), :mod:`~dlparts.ops._numba.nearest` (nearest-first search on
  a grid) and :mod:`~dlparts.ops._numba.buckets` (bucket-pruned FPS): each imports only the leaf and the config;
  :mod:`~dlparts.ops._numba.grid` (ball query and kNN on a grid) also imports ``nearest``.

:mod:`dlparts.ops.cpu` is the front: tensors to arrays, the choice of kernel by size, arrays back to tensors.
"""

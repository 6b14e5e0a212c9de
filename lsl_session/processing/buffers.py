"""Large numpy arrays whose pages are mapped in bulk (see `populated`)."""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

#: Arrays at least this large are mapped with their pages populated at once.
POPULATE_BYTES = 1 << 20


def populated(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array whose memory pages are mapped in one system call.

    The sample arrays are filled once, front to back: faulting their pages in one
    by one cost more CPU than the copy itself (~1 s per 0.4 GB here), while
    ``MAP_POPULATE`` maps them in bulk. Small arrays, and systems without
    ``MAP_POPULATE``, get ``numpy.empty``.
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    flags = getattr(mmap, "MAP_POPULATE", 0)
    if nbytes < POPULATE_BYTES or not flags:
        return np.empty(shape, dtype)
    try:
        area = mmap.mmap(
            -1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flags
        )
    except OSError:  # no room for the mapping: numpy's allocator reports it
        return np.empty(shape, dtype)
    return np.frombuffer(area, dtype, count=count).reshape(shape)

"""Reading tensor bytes out of large checkpoint files, and transposing them on every core.

The readers of `pytorch_model.bin` and safetensors locate each tensor at an offset of a file;
this module turns those offsets into numpy arrays without holding more than a block at a time:

- `ByteRanges.view`: a local file is memory-mapped once; a block is a view of the mapping (no
  copy), and its pages are dropped from the process's resident set (`MADV_DONTNEED`; the kernel's
  page cache keeps them) when the next block is viewed, so the resident set never grows towards
  the file's size. Remote files (`gs://`) are read into one reused buffer instead.
- `ByteRanges.read_into`: a tensor the caller keeps, read into an array of its own.
- `transpose_into`: a 2-D block transposed into its place in the output in 256 x 256 tiles (3x
  faster than numpy's whole-array transpose, whose writes miss the cache on every element),
  columns split over a thread pool (numpy copies release the GIL).
"""

import concurrent.futures
import mmap
import os
import threading

import numpy as np

_TILE = 256
_PARALLEL_MIN = 1 << 18  # elements; smaller blocks are transposed by the calling thread
_pool = None
_pool_lock = threading.Lock()


def _threads() -> int:
  return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def _executor():
  global _pool
  with _pool_lock:
    if _pool is None:
      _pool = concurrent.futures.ThreadPoolExecutor(_threads(), thread_name_prefix="t0jax-ckpt")
    return _pool


def _transpose_columns(block: np.ndarray, out: np.ndarray, row0: int, c0: int, c1: int) -> None:
  rows = block.shape[0]
  for r in range(0, rows, _TILE):
    r1 = min(r + _TILE, rows)
    for c in range(c0, c1, _TILE):
      c_stop = min(c + _TILE, c1)
      out[c:c_stop, row0 + r : row0 + r1] = block[r:r1, c:c_stop].T


def transpose_into(block: np.ndarray, out: np.ndarray, row0: int) -> None:
  """out[:, row0 : row0 + len(block)] = block.T, converting to out's dtype."""
  cols = block.shape[1]
  tiles = -(-cols // _TILE)
  parts = min(_threads(), tiles)
  if parts == 1 or block.size < _PARALLEL_MIN:
    _transpose_columns(block, out, row0, 0, cols)
    return
  bounds = [min(cols, (tiles * i // parts) * _TILE) for i in range(parts + 1)]
  done = [
    _executor().submit(_transpose_columns, block, out, row0, a, b)
    for a, b in zip(bounds, bounds[1:])
  ]
  for future in done:
    future.result()


def read_into(f, out: np.ndarray) -> int:
  """Fill the contiguous array `out` from file `f`'s position; the number of bytes read."""
  view = out.reshape(-1).view(np.uint8)
  if hasattr(f, "readinto"):  # local files: straight into the array, no intermediate copy
    return f.readinto(view)
  data = f.read(view.size)  # remote (gs://) file objects may only offer read()
  view[: len(data)] = np.frombuffer(data, np.uint8)
  return len(data)


class ByteRanges:
  """Byte ranges of one file, as views (valid until the next `view`) or copies."""

  def __init__(self, file):
    """`file`: a binary file object open for reading (the caller closes it)."""
    self._file = file
    self._map = None
    self._viewed = None  # (start, stop) of the mapped pages the last view touched
    self._buffer = np.empty(0, np.uint8)
    try:
      self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
      pass  # not a local file (gs://), or an empty one: positioned reads
    self._bytes = np.frombuffer(self._map, np.uint8) if self._map is not None else None

  def view(self, offset: int, nbytes: int) -> np.ndarray:
    """`nbytes` bytes from `offset` (uint8), fewer when the file ends first."""
    if self._map is None:
      if self._buffer.size < nbytes:
        self._buffer = np.empty(nbytes, np.uint8)
      self._file.seek(offset)
      got = read_into(self._file, self._buffer[:nbytes])
      return self._buffer[:got]
    self._release()
    page = offset - offset % mmap.PAGESIZE
    self._viewed = (page, min(len(self._bytes), offset + nbytes))
    return self._bytes[offset : offset + nbytes]

  def read_into(self, offset: int, out: np.ndarray) -> int:
    self._file.seek(offset)
    return read_into(self._file, out)

  def _release(self) -> None:
    if self._viewed is not None and hasattr(mmap, "MADV_DONTNEED"):
      start, stop = self._viewed
      if stop > start:
        self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)
    self._viewed = None

  def close(self) -> None:
    if self._map is not None:
      self._release()
      self._bytes = None
      try:
        self._map.close()
      except BufferError:  # a view is still referenced; the mapping goes with it
        pass
      self._map = None

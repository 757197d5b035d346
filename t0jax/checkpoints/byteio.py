"""Reading tensor bytes out of large checkpoint files, and transposing them fast.

The readers of `pytorch_model.bin` and safetensors locate each tensor at an offset of a file;
this module turns those offsets into numpy arrays without holding more than a block at a time:

- `ByteRanges.view`: a block read into one reused buffer, aligned so that XLA reads it in place.
  Memory-mapping the file instead (as safetensors' and torch's readers do) keeps every page read
  in the resident set until the file is closed, and costs a page fault per 4 KiB; a reused buffer
  costs one copy from the page cache and works the same for remote (`gs://`) files.
- `ByteRanges.read_into`: a tensor the caller keeps, read into an array of its own.
- `transpose_into`: a 2-D block transposed (and cast) into its place in the output. XLA's CPU
  transpose does it at memory speed (measured: 2x numpy's best, 256 x 256 tiles, on two cores);
  numpy tiles serve blocks too small to be worth a dispatch.
"""

import functools

import jax
import numpy as np

_TILE = 256
_XLA_MIN = 1 << 16  # elements; smaller blocks are transposed by numpy
_ALIGN = 64  # bytes: XLA reads a host array in place only at this alignment


@functools.cache
def _host():
  return jax.devices("cpu")[0]


@functools.partial(jax.jit, static_argnums=1)
def _transposed(block, dtype):
  return block.T.astype(dtype)


def transposed(block: np.ndarray, dtype) -> np.ndarray:
  """block.T in `dtype`, in a new array (one pass over the block's memory)."""
  if block.size < _XLA_MIN:
    out = np.empty(block.shape[::-1], dtype)
    transpose_into(block, out, 0)
    return out
  # Committed to the host's CPU, whatever the default device; a local block is not copied.
  return np.asarray(_transposed(jax.device_put(block, _host()), np.dtype(dtype)))


def transpose_into(block: np.ndarray, out: np.ndarray, row0: int) -> None:
  """out[:, row0 : row0 + len(block)] = block.T, converting to out's dtype."""
  rows, cols = block.shape
  if block.size >= _XLA_MIN:
    out[:, row0 : row0 + rows] = transposed(block, out.dtype)
    return
  # Tile by tile: a whole-block numpy transpose misses the cache on every element (3x slower).
  for r in range(0, rows, _TILE):
    r1 = min(r + _TILE, rows)
    for c in range(0, cols, _TILE):
      out[c : c + _TILE, row0 + r : row0 + r1] = block[r:r1, c : c + _TILE].T


def read_into(f, out: np.ndarray) -> int:
  """Fill the contiguous array `out` from file `f`'s position; the number of bytes read."""
  view = out.reshape(-1).view(np.uint8)
  if hasattr(f, "readinto"):  # local files: straight into the array, no intermediate copy
    return f.readinto(view)
  data = f.read(view.size)  # remote (gs://) file objects may only offer read()
  view[: len(data)] = np.frombuffer(data, np.uint8)
  return len(data)


def _aligned_empty(nbytes: int) -> np.ndarray:
  """An uninitialised uint8 array whose data starts at a multiple of `_ALIGN` (numpy's own
  start 16 bytes past one)."""
  raw = np.empty(nbytes + _ALIGN, np.uint8)
  skip = -raw.ctypes.data % _ALIGN
  return raw[skip : skip + nbytes]


class ByteRanges:
  """Byte ranges of one open file: blocks read into one reused buffer, or tensors into arrays
  of their own."""

  def __init__(self, file):
    """`file`: a binary file object open for reading (the caller closes it)."""
    self._file = file
    self._buffer = np.empty(0, np.uint8)

  def view(self, offset: int, nbytes: int) -> np.ndarray:
    """`nbytes` bytes from `offset` (uint8; fewer when the file ends first), valid until the
    next call."""
    if self._buffer.size < nbytes:
      self._buffer = _aligned_empty(nbytes)
    self._file.seek(offset)
    return self._buffer[: read_into(self._file, self._buffer[:nbytes])]

  def read_into(self, offset: int, out: np.ndarray) -> int:
    self._file.seek(offset)
    return read_into(self._file, out)

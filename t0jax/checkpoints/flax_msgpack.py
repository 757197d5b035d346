"""Hugging Face Flax T5 checkpoints (`flax_model.msgpack`, single or sharded with an index).

The file is `flax.serialization.to_bytes` of the parameter tree in HF's Flax T5 layout:
`shared/embedding`, `{encoder,decoder}/block/<i>/layer/<j>/SelfAttention/q/kernel` ([in, out]),
`.../relative_attention_bias/embedding` under block 0, `.../layer_norm/weight`,
`.../DenseReluDense/wi_0/kernel`, `lm_head/kernel`. Each name is the PyTorch name with `/` for `.`
and kernels transposed, so the tensors are served under their PyTorch names to hf.py's one name
table. `flax.serialization.msgpack_restore` would read the whole file into memory; `read_tree`
instead walks the msgpack structure and records where each array's bytes are, which are read
one tensor at a time. T5X's `checkpoint` file uses the same encoding (t5x.py reads it here too).
"""

import dataclasses
import json
import math
import struct

import ml_dtypes
import numpy as np
from etils import epath

from t0jax.checkpoints import byteio, hf
from t0jax.checkpoints.hf import CheckpointError, CheckpointNotFoundError

WEIGHTS_FILE = "flax_model.msgpack"
INDEX_FILE = "flax_model.msgpack.index.json"
_NDARRAY_EXT, _NPSCALAR_EXT = 1, 3  # flax.serialization's extension type codes
_CHUNKED = "__msgpack_chunked_array__"  # flax splits arrays over 1 GiB into flat chunks


class _Truncated(Exception):
  pass


@dataclasses.dataclass(frozen=True)
class LazyArray:
  """An array of a msgpack file, located but not read."""

  file: epath.Path
  offset: int
  shape: tuple
  dtype: np.dtype

  def read(self) -> np.ndarray:
    out = np.empty(self.shape, self.dtype)
    with self.file.open("rb") as f:
      f.seek(self.offset)
      if byteio.read_into(f, out) != out.nbytes:
        raise CheckpointError(f"{self.file}: truncated; download it again.")
    return out


@dataclasses.dataclass(frozen=True)
class _ChunkedArray:
  """A flax array stored as flat chunks; reads them in order into one array."""

  chunks: tuple
  shape: tuple
  dtype: np.dtype

  def read(self) -> np.ndarray:
    out = np.empty(math.prod(self.shape), self.dtype)
    start = 0
    for chunk in self.chunks:
      n = math.prod(chunk.shape)
      out[start : start + n] = chunk.read().reshape(-1)
      start += n
    return out.reshape(self.shape)


class _Walker:
  """A msgpack reader that skips over array bytes, keeping their offsets (`LazyArray`)."""

  def __init__(self, path: epath.Path, f):
    self.path, self.f = path, f

  def take(self, n: int) -> bytes:
    data = self.f.read(n)
    if len(data) != n:
      raise _Truncated()
    return data

  def unpack(self, fmt: str):
    return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

  def value(self):
    b = self.take(1)[0]
    if b <= 0x7F or b >= 0xE0:
      return b if b <= 0x7F else b - 0x100
    if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
      n = b & 0x0F if b <= 0x8F else self.unpack(">H" if b == 0xDE else ">I")
      return {self.value(): self.value() for _ in range(n)}
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
      n = b & 0x0F if b <= 0x9F else self.unpack(">H" if b == 0xDC else ">I")
      return [self.value() for _ in range(n)]
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB):
      n = b & 0x1F if b <= 0xBF else self.unpack({0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}[b])
      return self.take(n).decode("utf-8")
    if b in (0xC4, 0xC5, 0xC6):
      return self.take(self.unpack({0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}[b]))
    if b in (0xC7, 0xC8, 0xC9) or 0xD4 <= b <= 0xD8:
      n = 1 << (b - 0xD4) if b >= 0xD4 else self.unpack({0xC7: ">B", 0xC8: ">H", 0xC9: ">I"}[b])
      return self._ext(self.unpack(">b"), n)
    simple = {0xC0: None, 0xC2: False, 0xC3: True}
    if b in simple:
      return simple[b]
    fmt = {
      0xCA: ">f",
      0xCB: ">d",
      0xCC: ">B",
      0xCD: ">H",
      0xCE: ">I",
      0xCF: ">Q",
      0xD0: ">b",
      0xD1: ">h",
      0xD2: ">i",
      0xD3: ">q",
    }.get(b)
    if fmt is None:
      raise CheckpointError(
        f"{self.path}: byte 0x{b:02x} at offset {self.f.tell() - 1} is not "
        "msgpack; the file is corrupt, download it again."
      )
    return self.unpack(fmt)

  def _ext(self, code: int, n: int):
    end = self.f.tell() + n
    if code not in (_NDARRAY_EXT, _NPSCALAR_EXT):
      self.take(n)
      raise CheckpointError(
        f"{self.path}: msgpack extension type {code} is not a flax array; "
        "not a flax.serialization file."
      )
    # The payload is itself msgpack: [shape, dtype name, raw bytes].
    head = self.take(1)[0]
    if head != 0x93:
      raise CheckpointError(f"{self.path}: malformed array record; the file is corrupt.")
    shape, dtype_name = tuple(self.value()), self.value()
    b = self.take(1)[0]
    if b not in (0xC4, 0xC5, 0xC6):
      raise CheckpointError(f"{self.path}: malformed array record; the file is corrupt.")
    size = self.unpack({0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}[b])
    dtype = _dtype(dtype_name, self.path)
    if size != math.prod(shape) * dtype.itemsize or self.f.tell() + size != end:
      raise CheckpointError(
        f"{self.path}: array record of shape {list(shape)} {dtype_name} has "
        f"{size} bytes; the file is corrupt."
      )
    array = LazyArray(self.path, self.f.tell(), shape, dtype)
    self.f.seek(end)
    return array


def _dtype(name: str, path) -> np.dtype:
  if name == "bfloat16":
    return np.dtype(ml_dtypes.bfloat16)
  try:
    return np.dtype(name)
  except TypeError:
    raise CheckpointError(f"{path}: unknown array dtype {name!r}.") from None


def _unchunk(node):
  if isinstance(node, dict):
    if node.get(_CHUNKED) is True:
      chunks = tuple(node["chunks"][str(i)] for i in range(len(node["chunks"])))
      shape = tuple(node["shape"][str(i)] for i in range(len(node["shape"])))
      return _ChunkedArray(chunks, shape, chunks[0].dtype)
    return {k: _unchunk(v) for k, v in node.items()}
  return node


def read_tree(path) -> dict:
  """The tree of a flax.serialization msgpack file, arrays as `LazyArray`s (nothing read)."""
  path = epath.Path(path)
  if not path.exists():
    raise CheckpointNotFoundError(f"{path} does not exist.")
  with path.open("rb") as f:
    walker = _Walker(path, f)
    try:
      tree = walker.value()
      extra = f.read(1)
    except _Truncated:
      raise CheckpointError(
        f"{path}: truncated (ends inside a record); download it again."
      ) from None
  if extra:
    raise CheckpointError(f"{path}: data after the end of the msgpack tree; the file is corrupt.")
  return _unchunk(tree)


def flatten(tree, prefix: str = "", sep: str = "/") -> dict:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{sep}{key}" if prefix else str(key)
    if isinstance(value, dict):
      out.update(flatten(value, name, sep))
    else:
      out[name] = value
  return out


def _torch_name(flax_name: str):
  """HF Flax name -> (HF PyTorch name, whether the kernel is transposed)."""
  parts = flax_name.split("/")
  if parts[-1] == "kernel":
    return ".".join(parts[:-1] + ["weight"]), True
  if parts[-1] == "embedding":
    return ".".join(parts[:-1] + ["weight"]), False
  return ".".join(parts), False


class FlaxMsgpackSource:
  """The tensors of `flax_model.msgpack` (or its shards) under their PyTorch names."""

  def __init__(self, directory):
    directory = epath.Path(directory)
    self.where = str(directory)
    index = directory / INDEX_FILE
    if index.exists():
      weight_map = _weight_map(index)
      files = sorted(set(weight_map.values()))
      for name in files:
        if not (directory / name).exists():
          raise CheckpointNotFoundError(
            f"{index} lists shard {name}, which is missing from "
            f"{directory}; download the complete checkpoint."
          )
    else:
      weight_map, files = None, [WEIGHTS_FILE]
    flat = {}
    for name in files:
      tree = read_tree(directory / name)
      flat.update(flatten(tree.get("params", tree) if isinstance(tree, dict) else {}))
    if weight_map is not None:
      absent = sorted(set(weight_map) - set(flat))
      if absent:
        raise CheckpointError(
          f"{index} names {len(absent)} tensor(s) no shard holds, e.g. "
          f"{absent[:3]}; the shards or the index are incomplete."
        )
    self.names = {}
    for flax_name, array in flat.items():
      if not isinstance(array, (LazyArray, _ChunkedArray)):
        raise CheckpointError(
          f"{directory}: {flax_name} is not an array; not a Flax T5 checkpoint."
        )
      torch_name, transposed = _torch_name(flax_name)
      self.names[torch_name] = (array, transposed)

  def shape(self, name: str) -> tuple:
    array, transposed = self.names[name]
    return tuple(reversed(array.shape)) if transposed else tuple(array.shape)

  def get(self, name: str) -> np.ndarray:
    array, transposed = self.names[name]
    value = array.read()
    return value.T if transposed else value


def _weight_map(index: epath.Path) -> dict:
  try:
    weight_map = json.loads(index.read_text())["weight_map"]
    if not isinstance(weight_map, dict):
      raise TypeError("weight_map is not an object")
    return weight_map
  except (ValueError, KeyError, TypeError) as e:
    raise CheckpointError(
      f"{index}: not a checkpoint index (needs a 'weight_map' object of "
      f"tensor name -> shard file): {e}"
    ) from None


detect, read_config, load_params = hf.tensor_source_format(
  FlaxMsgpackSource, WEIGHTS_FILE, INDEX_FILE
)

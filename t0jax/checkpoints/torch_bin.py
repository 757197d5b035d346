"""PyTorch `pytorch_model.bin` checkpoints (single or sharded), read without torch or pickle code.

`torch.save` writes a zip archive: `<name>/data.pkl` (a pickle of the state dict whose tensors
refer to storages by key) and `<name>/data/<key>` (each storage's raw bytes, stored uncompressed).
Running that pickle with `pickle.load` can call any importable function, so it never is: a
restricted unpickler resolves only the globals a state dict of tensors needs (`_ALLOWED`) to
constructors defined here that build lazy tensor records; any other global stops the unpickling
with an error before it is called. Tensor bytes are read later, one tensor at a time, straight
from the archive member at its offset.
"""

import _compat_pickle
import collections
import dataclasses
import io
import json
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np
from etils import epath

from t0jax.checkpoints import byteio, hf
from t0jax.checkpoints.hf import CheckpointError, CheckpointNotFoundError

WEIGHTS_FILE = "pytorch_model.bin"
INDEX_FILE = "pytorch_model.bin.index.json"

_STORAGE_DTYPES = {
  "FloatStorage": np.float32,
  "DoubleStorage": np.float64,
  "HalfStorage": np.float16,
  "BFloat16Storage": ml_dtypes.bfloat16,
  "LongStorage": np.int64,
  "IntStorage": np.int32,
  "ShortStorage": np.int16,
  "CharStorage": np.int8,
  "ByteStorage": np.uint8,
  "BoolStorage": np.bool_,
}
_ZIP_LOCAL_HEADER = struct.Struct("<4s22sHH")  # signature, fixed fields, name and extra lengths


@dataclasses.dataclass(frozen=True)
class _StorageType:
  dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _Storage:
  key: str
  dtype: np.dtype
  numel: int


@dataclasses.dataclass(frozen=True)
class LazyTensor:
  """A tensor of the archive, not yet read: which storage, where in it, and its layout."""

  storage: _Storage
  offset: int  # in elements
  shape: tuple
  stride: tuple


def _rebuild_tensor(
  storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
  del requires_grad, backward_hooks, metadata  # training-time flags: irrelevant to the values
  if not isinstance(storage, _Storage):
    raise pickle.UnpicklingError("a tensor was built from something that is not a storage")
  numbers = (storage_offset, *size, *stride)
  if len(size) != len(stride) or not all(isinstance(n, int) and n >= 0 for n in numbers):
    raise pickle.UnpicklingError(f"a tensor with size {size!r:.60} and stride {stride!r:.60}")
  return LazyTensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  return data


def _ordered_dict(*args):
  return collections.OrderedDict(*args)


# Every global a state dict of tensors pickles, mapped to the harmless stand-in used instead.
# Nothing else resolves, so nothing else can run.
_ALLOWED = {
  ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
  ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  ("collections", "OrderedDict"): _ordered_dict,
  **{("torch", name): _StorageType(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
}


class _Refused(pickle.UnpicklingError):
  pass


class _StateDictUnpickler(pickle.Unpickler):
  def find_class(self, module, name):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      # Name it as Python 3 does (protocol 2 pickles write `__builtin__.eval`).
      module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
      module = _compat_pickle.IMPORT_MAPPING.get(module, module)
      raise _Refused(f"{module}.{name}") from None

  def persistent_load(self, pid):
    if not (
      isinstance(pid, tuple)
      and len(pid) == 5
      and pid[0] == "storage"
      and isinstance(pid[1], _StorageType)
    ):
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
    return _Storage(str(pid[2]), pid[1].dtype, int(pid[4]))


class _Archive:
  """One `torch.save` zip: its state dict of lazy tensors, and reads of their bytes."""

  def __init__(self, path: epath.Path):
    self.path = path
    if not path.exists():
      raise CheckpointNotFoundError(f"{path} does not exist; download the complete checkpoint.")
    self._file = path.open("rb")
    try:
      self._open()
      self._ranges = byteio.ByteRanges(self._file)
    except BaseException:
      self._file.close()
      raise

  def _open(self):
    path = self.path
    head = self._file.read(4)
    if head[:2] != b"PK":
      raise CheckpointError(
        f"{path}: not a zip archive, so not written by torch.save >= 1.6 (legacy pre-1.6 "
        "format, or not a PyTorch file). t0jax does not read the legacy format; re-save it once "
        "with a recent torch: `torch.save(torch.load(F, weights_only=True), F)`, or with "
        "transformers `save_pretrained(..., safe_serialization=True)`."
      )
    try:
      self._zip = zipfile.ZipFile(self._file)
      pkl = [n for n in self._zip.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
      if len(pkl) != 1:
        raise CheckpointError(
          f"{path}: a zip archive without one data.pkl; not a torch.save checkpoint."
        )
      self._prefix = pkl[0][: -len("data.pkl")]
      pickled = self._zip.read(pkl[0])
    except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as e:
      raise CheckpointError(
        f"{path}: corrupt or truncated archive ({e}); download it again."
      ) from None
    self.tensors = self._unpickle(pickled)

  def _unpickle(self, pickled: bytes) -> dict:
    try:
      state = _StateDictUnpickler(io.BytesIO(pickled)).load()
    except _Refused as e:
      raise CheckpointError(
        f"{self.path}: refused to unpickle: it calls {e}, which a state dict of tensors never "
        "needs (a malicious or non-checkpoint file). Nothing from it was run; do not load it "
        "with torch.load either."
      ) from None
    except (
      pickle.UnpicklingError,
      EOFError,
      ValueError,
      TypeError,
      AttributeError,
      IndexError,
      KeyError,
    ) as e:
      raise CheckpointError(f"{self.path}: corrupt data.pkl ({e}); download it again.") from None
    if not isinstance(state, dict) or not all(
      isinstance(k, str) and isinstance(v, LazyTensor) for k, v in state.items()
    ):
      raise CheckpointError(
        f"{self.path}: holds a {type(state).__name__}, not a state dict of "
        "named tensors; save `model.state_dict()`."
      )
    return state

  def _data_offset(self, key: str):
    name = f"{self._prefix}data/{key}"
    try:
      info = self._zip.getinfo(name)
    except KeyError:
      raise CheckpointError(
        f"{self.path}: storage {name} is missing; the archive is "
        "truncated or corrupt, download it again."
      ) from None
    if info.compress_type != zipfile.ZIP_STORED:
      raise CheckpointError(
        f"{self.path}: storage {name} is compressed; torch.save never "
        "compresses, so this file was rewritten by another tool. Re-save it "
        "with torch.save."
      )
    self._file.seek(info.header_offset)
    sig, _, n_name, n_extra = _ZIP_LOCAL_HEADER.unpack(self._file.read(_ZIP_LOCAL_HEADER.size))
    if sig != b"PK\x03\x04":
      raise CheckpointError(f"{self.path}: corrupt zip entry {name}; download it again.")
    return info.header_offset + _ZIP_LOCAL_HEADER.size + n_name + n_extra, info.file_size

  def _span(self, t: LazyTensor):
    """(file offset, element count) of the elements from the first to the last one the tensor
    touches (its strides may skip some)."""
    start, size = self._data_offset(t.storage.key)
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride))
    if (t.offset + span) * t.storage.dtype.itemsize > size:
      raise CheckpointError(
        f"{self.path}: a tensor reaches past the end of storage "
        f"{t.storage.key}; the archive is truncated or corrupt."
      )
    return start + t.offset * t.storage.dtype.itemsize, span

  def _truncated(self, t: LazyTensor) -> CheckpointError:
    return CheckpointError(
      f"{self.path}: truncated archive (storage {t.storage.key} ends early); download it again."
    )

  def read(self, t: LazyTensor) -> np.ndarray:
    """The tensor's values in an array of its own: one read of its bytes, in the archive's
    dtype."""
    if any(n == 0 for n in t.shape):
      return np.zeros(t.shape, t.storage.dtype)
    offset, span = self._span(t)
    flat = np.empty(span, t.storage.dtype)
    if self._ranges.read_into(offset, flat) != flat.nbytes:
      raise self._truncated(t)
    if t.stride == _contiguous_strides(t.shape):
      return flat.reshape(t.shape)
    itemsize = t.storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
      flat, t.shape, tuple(s * itemsize for s in t.stride)
    ).copy()

  def view(self, t: LazyTensor) -> np.ndarray:
    """The values of a row-major tensor as a view, valid until the next view of this archive."""
    offset, span = self._span(t)
    data = self._ranges.view(offset, span * t.storage.dtype.itemsize)
    if data.size != span * t.storage.dtype.itemsize:
      raise self._truncated(t)
    return data.view(t.storage.dtype).reshape(t.shape)


def _contiguous_strides(shape: tuple) -> tuple:
  strides, step = [], 1
  for n in reversed(shape):
    strides.append(step)
    step *= n
  return tuple(reversed(strides))


def _shard_files(directory: epath.Path):
  """The archive files, and the index's weight map when the checkpoint is sharded."""
  index = directory / INDEX_FILE
  if not index.exists():
    return [directory / WEIGHTS_FILE], None
  try:
    weight_map = json.loads(index.read_text())["weight_map"]
    files = sorted(set(weight_map.values()))
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise CheckpointError(
      f"{index}: not a checkpoint index (needs a 'weight_map' object of "
      f"tensor name -> shard file): {e}"
    ) from None
  for name in files:
    if not (directory / name).exists():
      raise CheckpointNotFoundError(
        f"{index} lists shard {name}, which is missing from "
        f"{directory}; download the complete checkpoint."
      )
  return [directory / name for name in files], weight_map


class TorchBinSource:
  """The tensors of `pytorch_model.bin` (or its shards): names, shapes, values on demand."""

  def __init__(self, directory):
    directory = epath.Path(directory)
    files, weight_map = _shard_files(directory)
    self.where = str(directory)
    self._where: dict = {}
    for file in files:
      archive = _Archive(file)
      for name, tensor in archive.tensors.items():
        self._where[name] = (archive, tensor)
    if weight_map is not None:
      absent = sorted(set(weight_map) - set(self._where))
      if absent:
        raise CheckpointError(
          f"{directory / INDEX_FILE} names {len(absent)} tensor(s) no shard holds, e.g. "
          f"{absent[:3]}; the shards or the index are incomplete, download them again."
        )
    self.names = self._where

  def shape(self, name: str) -> tuple:
    return self._where[name][1].shape

  def dtype(self, name: str) -> np.dtype:
    return self._where[name][1].storage.dtype

  def get(self, name: str) -> np.ndarray:
    archive, tensor = self._where[name]
    return archive.read(tensor)

  def get_rows(self, name: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a tensor, valid until the next call: a view of only their bytes
    when it is stored row-major."""
    archive, t = self._where[name]
    strides = _contiguous_strides(t.shape)
    if t.stride != strides or stop <= start or any(n == 0 for n in t.shape):
      return archive.read(t)[start:stop]
    rows = dataclasses.replace(
      t, offset=t.offset + start * strides[0], shape=(stop - start,) + t.shape[1:]
    )
    return archive.view(rows)


detect, read_config, load_params = hf.tensor_source_format(TorchBinSource, WEIGHTS_FILE, INDEX_FILE)

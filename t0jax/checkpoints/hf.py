"""Hugging Face `T5ForConditionalGeneration` checkpoints in and out, without torch.

The name table (`_tensors`) maps HF's names onto t0jax's tree once, for every source of
HF-named tensors: safetensors here, `pytorch_model.bin` (torch_bin.py) and `flax_model.msgpack`
(flax_msgpack.py) through the same small interface (`names`, `shape(name)`, `get(name)`).
Tensors are converted one at a time, so importing an 11B model needs about one copy of its
parameters in memory, not two; with shardings, each tensor goes straight to its devices.
"""

import dataclasses
import functools
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import jax
import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, so safetensors can read bf16 files)
import numpy as np
from etils import epath
from safetensors.numpy import save_file

from t0jax.checkpoints import byteio
from t0jax.data.vocab import EOS_ID, PAD_ID, VOCAB_FILE
from t0jax.model import layout
from t0jax.model.config import T5Config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# mT5 / mT0 are T5 v1.1 with a 250,112-piece vocabulary: the same tensors under the same names.
_MODEL_TYPES = ("t5", "mt5")
_ARCHITECTURES = ("T5ForConditionalGeneration", "T5WithLMHeadModel", "MT5ForConditionalGeneration")
# HF's "gated-gelu" is the tanh approximation of GELU ("gelu_new"), as is t0jax's "gelu".
_FEED_FORWARD = {
  "relu": ("relu",),
  "gated-gelu": ("gelu", "linear"),
  "gated-gelu_new": ("gelu", "linear"),
}
# Tensors some exports carry that add nothing: copies of `shared.weight`, and a cross-attention
# bias table that T5 never uses.
_REDUNDANT = (
  "encoder.embed_tokens.weight",
  "decoder.embed_tokens.weight",
  "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
)


class CheckpointError(ValueError):
  """A checkpoint t0jax cannot read or write; the message names the file and what to do."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
  """A checkpoint directory or one of its files does not exist."""


@dataclasses.dataclass(frozen=True)
class _Tensor:
  hf_name: str
  path: tuple  # in the unscanned t0jax tree
  kind: str  # how PyTorch's layout maps onto t0jax's: see `_to_t0jax`
  hf_shape: tuple


def _to_t0jax(kind: str, w: np.ndarray, cfg: T5Config) -> np.ndarray:
  # PyTorch Linear weights are [out, in]; flax kernels are [in, out] with heads split out.
  d, h, k = cfg.d_model, cfg.num_heads, cfg.head_dim
  if kind == "qkv":
    return w.T.reshape(d, h, k)
  if kind == "attention_out":
    return w.T.reshape(h, k, d)
  if kind == "transpose":
    return w.T
  return w


def _to_hf(kind: str, x: np.ndarray, cfg: T5Config) -> np.ndarray:
  d, hk = cfg.d_model, cfg.num_heads * cfg.head_dim
  if kind == "qkv":
    return x.reshape(d, hk).T
  if kind == "attention_out":
    return x.reshape(hk, d).T
  if kind == "transpose":
    return x.T
  return x


def _t0jax_shape(t: _Tensor, cfg: T5Config) -> tuple:
  return _to_t0jax(t.kind, np.empty(t.hf_shape, np.int8), cfg).shape


def _tensors(cfg: T5Config) -> list:
  """Every tensor of an HF T5 checkpoint for `cfg`, with its place in the t0jax tree."""
  d, hk, f, v = cfg.d_model, cfg.num_heads * cfg.head_dim, cfg.d_ff, cfg.vocab_size
  gated = len(cfg.mlp_activations) > 1
  wi = [f"wi_{i}" for i in range(len(cfg.mlp_activations))] if gated else ["wi"]
  out = [_Tensor("shared.weight", ("token_embedder", "embedding"), "copy", (v, d))]

  def norm(name, path):
    out.append(_Tensor(name, path + ("scale",), "copy", (d,)))

  def attention(prefix, path):
    for hf, mine in (("q", "query"), ("k", "key"), ("v", "value")):
      out.append(_Tensor(f"{prefix}.{hf}.weight", path + (mine, "kernel"), "qkv", (hk, d)))
    out.append(_Tensor(f"{prefix}.o.weight", path + ("out", "kernel"), "attention_out", (d, hk)))

  def mlp(prefix, path):
    for name in wi:
      out.append(
        _Tensor(f"{prefix}.{name}.weight", path + ("mlp", name, "kernel"), "transpose", (f, d))
      )
    out.append(_Tensor(f"{prefix}.wo.weight", path + ("mlp", "wo", "kernel"), "transpose", (d, f)))

  rel = (cfg.relative_attention_num_buckets, cfg.num_heads)
  for stack, n in (("encoder", cfg.num_layers), ("decoder", cfg.decoder_layers)):
    out.append(
      _Tensor(
        f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        (stack, "relpos_bias", "rel_embedding"),
        "transpose",
        rel,
      )
    )
    for i in range(n):
      b, p = f"{stack}.block.{i}.layer", (stack, f"layers_{i}")
      if stack == "encoder":
        norm(f"{b}.0.layer_norm.weight", p + ("pre_attention_layer_norm",))
        attention(f"{b}.0.SelfAttention", p + ("attention",))
        norm(f"{b}.1.layer_norm.weight", p + ("pre_mlp_layer_norm",))
        mlp(f"{b}.1.DenseReluDense", p)
      else:
        norm(f"{b}.0.layer_norm.weight", p + ("pre_self_attention_layer_norm",))
        attention(f"{b}.0.SelfAttention", p + ("self_attention",))
        norm(f"{b}.1.layer_norm.weight", p + ("pre_cross_attention_layer_norm",))
        attention(f"{b}.1.EncDecAttention", p + ("encoder_decoder_attention",))
        norm(f"{b}.2.layer_norm.weight", p + ("pre_mlp_layer_norm",))
        mlp(f"{b}.2.DenseReluDense", p)
    norm(f"{stack}.final_layer_norm.weight", (stack, f"{stack}_norm"))
  if not cfg.tie_word_embeddings:
    out.append(
      _Tensor("lm_head.weight", ("decoder", "logits_dense", "kernel"), "transpose", (v, d))
    )
  return out


def _np_dtype(dtype) -> np.dtype:
  try:
    return np.dtype(dtype)
  except TypeError as e:
    raise CheckpointError(f"Unknown dtype {dtype!r}: use float32, bfloat16 or float16.") from e


# ---------------------------------------------------------------------------------------------
# config.json


def config_from_hf(hf: dict, source: str = CONFIG_FILE) -> T5Config:
  """The T5Config of an HF config.json dict (HF's defaults for absent keys).

  `tie_word_embeddings` here means "logits through the embedding, scaled by d_model**-0.5", which
  is what HF's flag meant until transformers 5 split it into `scale_decoder_outputs`.
  """
  model_type, archs = hf.get("model_type", "t5"), hf.get("architectures") or []
  if model_type not in _MODEL_TYPES or any(a not in _ARCHITECTURES for a in archs):
    raise CheckpointError(
      f"{source}: model_type {model_type!r}, architectures {archs} is not supported. t0jax reads "
      "T5ForConditionalGeneration and MT5ForConditionalGeneration checkpoints (T5 v1.0, v1.1, "
      "LM-adapted, T0/T0p/T0pp, mT5/mT0); umT5, LongT5 and encoder-only models have other "
      "layouts."
    )
  proj = hf.get("feed_forward_proj", "relu")
  if proj not in _FEED_FORWARD:
    raise CheckpointError(
      f"{source}: feed_forward_proj {proj!r} is unsupported; t0jax supports "
      f"{sorted(_FEED_FORWARD)}."
    )
  scaled = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False)
  if model_type == "mt5":  # mT5 never scales its logits; transformers 5 writes tie=True for it
    scaled = bool(hf.get("scale_decoder_outputs", False))
  try:
    num_layers = int(hf.get("num_layers", 6))
    return T5Config(
      vocab_size=int(hf.get("vocab_size", 32128)),
      d_model=int(hf.get("d_model", 512)),
      num_heads=int(hf.get("num_heads", 8)),
      head_dim=int(hf.get("d_kv", 64)),
      d_ff=int(hf.get("d_ff", 2048)),
      num_layers=num_layers,
      num_decoder_layers=int(hf.get("num_decoder_layers") or num_layers),
      mlp_activations=_FEED_FORWARD[proj],
      tie_word_embeddings=bool(scaled),
      relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
      relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
      dropout_rate=float(hf.get("dropout_rate", 0.1)),
      layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-6)),
    )
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{source}: a size or rate is not a number ({e}); fix the file.") from e


def config_to_hf(cfg: T5Config, dtype=np.float32) -> dict:
  """A complete transformers T5Config dict for `cfg` (both the pre- and post-5.0 tie flags)."""
  acts = tuple(cfg.mlp_activations)
  proj = {("relu",): "relu", ("gelu", "linear"): "gated-gelu"}.get(acts)
  if proj is None:
    raise CheckpointError(
      f"T5Config.mlp_activations={acts} has no Hugging Face equivalent; HF T5 "
      "supports ('relu',) (v1.0) and ('gelu', 'linear') (v1.1)."
    )
  dtype_name = _np_dtype(dtype).name
  return {
    "architectures": ["T5ForConditionalGeneration"],
    "model_type": "t5",
    "vocab_size": cfg.vocab_size,
    "d_model": cfg.d_model,
    "d_kv": cfg.head_dim,
    "d_ff": cfg.d_ff,
    "num_heads": cfg.num_heads,
    "num_layers": cfg.num_layers,
    "num_decoder_layers": cfg.decoder_layers,
    "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
    "relative_attention_max_distance": cfg.relative_attention_max_distance,
    "dropout_rate": cfg.dropout_rate,
    "layer_norm_epsilon": cfg.layer_norm_epsilon,
    "initializer_factor": 1.0,
    "feed_forward_proj": proj,
    "dense_act_fn": "relu" if proj == "relu" else "gelu_new",
    "is_gated_act": proj != "relu",
    "tie_word_embeddings": cfg.tie_word_embeddings,
    "scale_decoder_outputs": cfg.tie_word_embeddings,
    "is_encoder_decoder": True,
    "use_cache": True,
    "decoder_start_token_id": 0,
    "pad_token_id": PAD_ID,
    "eos_token_id": EOS_ID,
    "torch_dtype": dtype_name,
    "dtype": dtype_name,
  }


# ---------------------------------------------------------------------------------------------
# Loading


# safetensors' dtype names; bf16 is ml_dtypes' (numpy has none).
_ST_DTYPES = {
  "F64": np.float64,
  "F32": np.float32,
  "F16": np.float16,
  "BF16": ml_dtypes.bfloat16,
  "I64": np.int64,
  "I32": np.int32,
  "I16": np.int16,
  "I8": np.int8,
  "U8": np.uint8,
  "BOOL": np.bool_,
}


class _SafetensorsFile:
  """One safetensors file read by offset (`byteio.ByteRanges`).

  safetensors' own numpy reader memory-maps the file and keeps every page it touched resident
  until the file is closed: a whole 44 GB checkpoint by the end of an import. Here a tensor that
  is kept is read into its own array, and blocks that are converted at once are read into one
  reused buffer, so the peak stays at about one tensor.
  The header is the format's documented 8-byte length + JSON (name -> dtype, shape, offsets).
  """

  def __init__(self, path):
    self.path = path
    self._file = None
    try:
      self._file = path.open("rb")
      size = int.from_bytes(self._file.read(8), "little")
      header = json.loads(self._file.read(size))
    except (OSError, ValueError) as e:
      if self._file is not None:
        self._file.close()
      raise CheckpointError(
        f"{path}: not a readable safetensors file ({e}); download it again."
      ) from e
    header.pop("__metadata__", None)
    self._data_start = 8 + size
    self.tensors = {}
    for name, entry in header.items():
      if entry.get("dtype") not in _ST_DTYPES:
        raise CheckpointError(
          f"{path}: tensor {name} has dtype {entry.get('dtype')!r}, which t0jax does not read."
        )
      begin, end = entry["data_offsets"]
      self.tensors[name] = (np.dtype(_ST_DTYPES[entry["dtype"]]), tuple(entry["shape"]), begin, end)
    self._ranges = byteio.ByteRanges(self._file)

  def _truncated(self, name: str) -> CheckpointError:
    return CheckpointError(
      f"{self.path}: tensor {name} is cut short (the file is truncated); download it again."
    )

  def read(self, name: str) -> np.ndarray:
    """The whole tensor, in an array of its own."""
    dtype, shape, begin, end = self.tensors[name]
    out = np.empty(shape, dtype)
    if self._ranges.read_into(self._data_start + begin, out) != end - begin:
      raise self._truncated(name)
    return out

  def rows(self, name: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a tensor: a view, valid until the next call."""
    dtype, shape, begin, _ = self.tensors[name]
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    nbytes = (stop - start) * row_bytes
    data = self._ranges.view(self._data_start + begin + start * row_bytes, nbytes)
    if data.size != nbytes:
      raise self._truncated(name)
    return data.view(dtype).reshape((stop - start,) + tuple(shape[1:]))


class _TensorFiles:
  """The safetensors files of a checkpoint directory (headers read now, tensors on demand).

  A tensor source: `names` (a container of HF tensor names), `shape(name)`, `get(name)` and
  `where` (names the checkpoint in errors); torch_bin and flax_msgpack provide the same.
  Optional `dtype(name)` and `get_rows(name, start, stop)` (rows of a 2-D tensor as a view valid
  until the next call), which let `_transposed_by_blocks` convert a tensor a block at a time.
  """

  def __init__(self, directory):
    self.where = str(directory)
    index, single = directory / INDEX_FILE, directory / WEIGHTS_FILE
    if index.exists():
      try:
        weight_map = json.loads(index.read_text())["weight_map"]
      except (ValueError, KeyError) as e:
        raise CheckpointError(
          f"{index}: not a safetensors index (needs a 'weight_map' object): {e}"
        ) from e
      files = [directory / name for name in sorted(set(weight_map.values()))]
    elif single.exists():
      files = [single]
    else:
      raise CheckpointNotFoundError(_no_safetensors_message(directory))
    self.names = {}
    for file in files:
      if not file.exists():
        raise CheckpointNotFoundError(
          f"{index} lists shard {file.name}, which is missing from "
          f"{directory}; download the complete checkpoint."
        )
      opened = _SafetensorsFile(file)
      for name in opened.tensors:
        self.names[name] = opened

  def shape(self, name: str) -> tuple:
    return self.names[name].tensors[name][1]

  def get(self, name: str) -> np.ndarray:
    return self.names[name].read(name)

  def dtype(self, name: str) -> np.dtype:
    return self.names[name].tensors[name][0]

  def get_rows(self, name: str, start: int, stop: int) -> np.ndarray:
    return self.names[name].rows(name, start, stop)


def _no_safetensors_message(directory: Path) -> str:
  found = (
    sorted(p.name for p in directory.glob("*.bin"))
    + sorted(p.name for p in directory.glob("*.h5"))
    + sorted(p.name for p in directory.glob("*.msgpack"))
  )
  msg = f"{directory}: no {WEIGHTS_FILE} or {INDEX_FILE}"
  if not found:
    return msg + "; point --checkpoint at a Hugging Face T5 checkpoint directory."
  return (
    msg + f" (found {', '.join(found)}). Load the directory with "
    "t0jax.checkpoints.load, which reads pytorch_model.bin and flax_model.msgpack too (a "
    "TensorFlow tf_model.h5 is not read: use one of the others)."
  )


def read_hf_config(directory) -> dict:
  """The config.json dict of an HF checkpoint directory (local or gs://)."""
  directory = epath.Path(directory)
  if not directory.is_dir():
    raise CheckpointNotFoundError(f"Checkpoint directory {directory} does not exist.")
  path = directory / CONFIG_FILE
  if not path.exists():
    raise CheckpointNotFoundError(
      f"{directory} has no {CONFIG_FILE}; a Hugging Face checkpoint "
      "directory holds config.json next to model.safetensors."
    )
  try:
    return json.loads(path.read_text())
  except ValueError as e:
    raise CheckpointError(f"{path} is not valid JSON: {e}") from e


def _output_head(cfg: T5Config, files: _TensorFiles):
  """How the checkpoint computes logits: (cfg, source tensor name, factor folded into it).

  t0jax ties the head only in v1.0's way (embedding, scaled). A tied-but-unscaled head or an
  untied-but-scaled one is loaded untied, with the scale folded into the kernel.
  """
  has_head = "lm_head.weight" in files.names
  if cfg.tie_word_embeddings:
    if not has_head or np.array_equal(files.get("lm_head.weight"), files.get("shared.weight")):
      return cfg, None, 1.0
    return cfg.replace(tie_word_embeddings=False), "lm_head.weight", cfg.d_model**-0.5
  return cfg, ("lm_head.weight" if has_head else "shared.weight"), 1.0


def load_hf_checkpoint(directory, *, dtype=np.float32, scan_layers: bool = False, shardings=None):
  """(T5Config, params) from an HF T5ForConditionalGeneration directory of safetensors.

  Parameters are numpy arrays of `dtype` (bf16 or fp32 on disk is converted); `scan_layers`
  returns the scanned layout directly (stacked arrays filled in place, no second copy).
  """
  directory = epath.Path(directory)
  cfg = config_from_hf(read_hf_config(directory), str(directory / CONFIG_FILE))
  return load_from_source(
    _TensorFiles(directory), cfg, dtype=dtype, scan_layers=scan_layers, shardings=shardings
  )


def load_from_source(
  files,
  cfg: T5Config,
  *,
  dtype=np.float32,
  scan_layers: bool = False,
  shardings=None,
  lazy: bool = False,
):
  """(T5Config, params) from any source of HF-named tensors (see `_TensorFiles`).

  With `shardings` (a tree like the params, of `jax.sharding.Sharding`), each unscanned tensor
  is placed on its devices as soon as it is read, each device taking only its slice, so a host
  holds one checkpoint tensor at a time; the scanned layout is stacked first, then placed.
  `lazy` returns `Deferred` leaves (unscanned layout) that read their tensor when converted with
  `np.asarray`, so a converter holds one tensor at a time.
  """
  directory = files.where
  dtype = _np_dtype(dtype)
  cfg, head_source, head_factor = _output_head(cfg, files)
  entries = _tensors(cfg)
  if head_source is not None:
    entries[-1] = dataclasses.replace(entries[-1], hf_name=head_source)

  wanted = {t.hf_name for t in entries}
  missing = [t.hf_name for t in entries if t.hf_name not in files.names]
  if missing:
    raise CheckpointError(
      f"{directory}: {len(missing)} tensor(s) that {CONFIG_FILE} implies are missing, e.g. "
      f"{missing[:3]}. Check that config.json belongs to these weights."
    )
  allowed = wanted | set(_REDUNDANT) | {"lm_head.weight"}
  unexpected = sorted(set(files.names) - allowed)
  if unexpected:
    raise CheckpointError(
      f"{directory}: {len(unexpected)} unexpected tensor(s), e.g. {unexpected[:3]}; the weights "
      f"do not match a T5ForConditionalGeneration with this {CONFIG_FILE}."
    )

  cfg = cfg.replace(scan_layers=scan_layers)
  for t in entries:
    found = tuple(files.shape(t.hf_name))
    if found != t.hf_shape:
      raise CheckpointError(
        f"{directory}: tensor {t.hf_name} (t0jax {'/'.join(t.path)}) has shape {list(found)}, "
        f"expected {list(t.hf_shape)} from {CONFIG_FILE}."
      )
  stream = shardings is not None and not scan_layers
  params: dict = {}
  if lazy:
    if scan_layers:
      raise CheckpointError("lazy loading gives the unscanned layout; pass scan_layers=False.")
    for t in entries:
      read = functools.partial(_read_t0jax, files, t, cfg, head_factor, dtype)
      layout.set_leaf(params, t.path, Deferred(_t0jax_shape(t, cfg), dtype, read), cfg)
    return cfg, params
  for t in entries:
    value = _read_t0jax(files, t, cfg, head_factor, dtype)
    if stream:
      value = place_on_devices(value, _sharding_at(shardings, t.path), dtype)
    layout.set_leaf(params, t.path, value, cfg)
  if shardings is not None and not stream:
    params = jax.tree.map(lambda v, s: place_on_devices(v, s, dtype), params, shardings)
  return cfg, params


def _read_t0jax(files, t: _Tensor, cfg: T5Config, head_factor: float, dtype=None) -> np.ndarray:
  """One tensor of `files` in t0jax's layout (a view when no conversion is needed)."""
  if dtype is not None and t.kind != "copy" and head_factor == 1.0 and hasattr(files, "get_rows"):
    return _transposed_by_blocks(files, t, cfg, dtype)
  value = _to_t0jax(t.kind, files.get(t.hf_name), cfg)
  if t.path == ("decoder", "logits_dense", "kernel") and head_factor != 1.0:
    value = value.astype(np.float32) * np.float32(head_factor)
  return value if dtype is None else np.ascontiguousarray(value, dtype=dtype)


_WHOLE_BYTES, _BLOCK_BYTES = 32 << 20, 4 << 20


def _transposed_by_blocks(files, t: _Tensor, cfg: T5Config, dtype) -> np.ndarray:
  """A 2-D HF weight transposed into t0jax's layout (every kind but "copy" is a transpose and a
  free reshape), holding at most 32 MiB of source at a time.

  A tensor up to that size is transposed in one pass; a larger one a block of rows at a time
  into its output: reading it whole and then transposing would hold it twice, which at T0pp's
  0.5 GB embedding-sized tensors is what bounds a host's peak memory.
  """
  rows, cols = t.hf_shape
  if rows * cols * np.dtype(files.dtype(t.hf_name)).itemsize <= _WHOLE_BYTES:
    out = byteio.transposed(files.get_rows(t.hf_name, 0, rows), dtype)
  else:
    out = np.empty((cols, rows), dtype)
    step = max(1, _BLOCK_BYTES // max(1, cols * out.itemsize))
    for start in range(0, rows, step):
      byteio.transpose_into(files.get_rows(t.hf_name, start, min(rows, start + step)), out, start)
  return out.reshape(_t0jax_shape(t, cfg))


@dataclasses.dataclass(frozen=True)
class Deferred:
  """A parameter not read yet: its shape and dtype, and how to read it (`np.asarray(leaf)`)."""

  shape: tuple
  dtype: np.dtype
  read: object  # () -> np.ndarray

  def __array__(self, dtype=None, copy=None):
    value = self.read()
    return value if dtype is None else value.astype(dtype)


# The format interface of t0jax/checkpoints/__init__.py.


def has_weights(path, weights_file: str = WEIGHTS_FILE, index_file: str = INDEX_FILE) -> bool:
  """An HF directory: config.json beside `weights_file` or its sharding index. Every HF-named
  format (safetensors, pytorch_model.bin, flax_model.msgpack) is detected by this rule."""
  path = epath.Path(path)
  return (path / CONFIG_FILE).exists() and (
    (path / weights_file).exists() or (path / index_file).exists()
  )


def detect(path) -> bool:
  """An HF directory of safetensors: config.json beside model.safetensors or its index."""
  return has_weights(path)


def read_config(path) -> T5Config:
  """The T5Config of the directory's config.json (no tensor is read)."""
  return config_from_hf(read_hf_config(path), str(epath.Path(path) / CONFIG_FILE))


def load_params(
  path, cfg=None, shardings=None, *, dtype=np.float32, scan_layers: bool = False, lazy: bool = False
):
  """(T5Config, params) of an HF safetensors directory; the config comes from its config.json."""
  del cfg
  if lazy:  # `Deferred` leaves, for converters (see load_from_source)
    return load_from_source(
      _TensorFiles(epath.Path(path)), read_config(path), dtype=dtype, lazy=True
    )
  return load_hf_checkpoint(path, dtype=dtype, scan_layers=scan_layers, shardings=shardings)


def tensor_source_format(source, weights_file: str, index_file: str):
  """`detect`, `read_config` and `load_params` of an HF-named format whose tensors
  `source(path)` serves (see `_TensorFiles`): the format interface of t0jax/checkpoints, for
  pytorch_model.bin and flax_model.msgpack. The config comes from config.json, as for every
  HF-named format."""

  def detect(path) -> bool:
    return has_weights(path, weights_file, index_file)

  def load_params(
    path,
    cfg=None,
    shardings=None,
    *,
    dtype=np.float32,
    scan_layers: bool = False,
    lazy: bool = False,
  ):
    return load_from_source(
      source(path),
      read_config(path) if cfg is None else cfg,
      dtype=dtype,
      scan_layers=scan_layers,
      shardings=shardings,
      lazy=lazy,
    )

  load_params.__doc__ = (
    f"(T5Config, params) from an HF directory holding `{weights_file}` or its shards."
  )
  return detect, read_config, load_params


def place_on_devices(value: np.ndarray, sharding, dtype) -> jax.Array:
  """`value` as a jax.Array in `sharding`; each device's slice is converted on its own."""
  return jax.make_array_from_callback(
    value.shape, sharding, lambda index: np.ascontiguousarray(value[index], dtype=dtype)
  )


def _sharding_at(shardings, path: tuple):
  node = shardings
  for key in path:
    node = node[key]
  return node


# ---------------------------------------------------------------------------------------------
# Saving


def _lookup(params, path: tuple):
  try:
    return layout.get_leaf(params, path)
  except KeyError:
    raise CheckpointError(
      f"params has no {'/'.join(path)}; they do not match the T5Config given to save_hf_checkpoint."
    ) from None


def _parse_size(size) -> int:
  if isinstance(size, (int, float)):
    return int(size)
  m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", str(size), re.IGNORECASE)
  if not m:
    raise CheckpointError(f"max_shard_size={size!r}: use bytes or a size like '2GB' or '500MB'.")
  unit = (m.group(2) or "B").upper()
  scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}[
    unit
  ]
  return int(float(m.group(1)) * scale)


def _plan_shards(entries: list, itemsize: int, max_bytes: int) -> list:
  shards, current, used = [], [], 0
  for t in entries:
    size = math.prod(t.hf_shape) * itemsize
    if current and used + size > max_bytes:
      shards.append(current)
      current, used = [], 0
    current.append(t)
    used += size
  return shards + [current]


def save_hf_checkpoint(
  params,
  cfg: T5Config,
  directory,
  *,
  dtype=np.float32,
  max_shard_size="2GB",
  vocab_path: Optional[str] = None,
  overwrite: bool = False,
) -> Path:
  """Write `params` as an HF T5ForConditionalGeneration checkpoint that transformers loads.

  Accepts the unscanned or the scanned layout. Files are written to a temporary sibling directory
  that is renamed into place at the end, so a crash never leaves a half-written checkpoint. Peak
  extra memory is one shard (`max_shard_size`) of converted tensors.
  """
  target = Path(directory)
  if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
    raise CheckpointError(
      f"{target} already exists and is not empty; choose a new directory or pass overwrite=True."
    )
  if vocab_path is not None and not Path(vocab_path).is_file():
    raise CheckpointNotFoundError(
      f"Vocabulary {vocab_path} does not exist; pass the "
      "sentencepiece model the checkpoint was trained with."
    )
  dtype = _np_dtype(dtype)
  hf_config = config_to_hf(cfg, dtype)
  entries = _tensors(cfg)
  exported = {t.path for t in entries}
  extra = sorted("/".join(p) for p in set(layout.unscanned_paths(params, cfg)) - exported)
  if extra:
    raise CheckpointError(
      f"params hold {len(extra)} parameter(s) the T5Config does not describe, "
      f"e.g. {extra[:3]}; pass the config the params were created with."
    )
  for t in entries:
    found, expected = tuple(np.shape(_lookup(params, t.path))), _t0jax_shape(t, cfg)
    if found != expected:
      raise CheckpointError(
        f"parameter {'/'.join(t.path)} has shape {list(found)}, expected "
        f"{list(expected)} from the T5Config."
      )

  shards = _plan_shards(entries, dtype.itemsize, _parse_size(max_shard_size))
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
  try:
    weight_map = {}
    for i, shard in enumerate(shards):
      name = (
        WEIGHTS_FILE if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
      )
      tensors = {
        t.hf_name: np.ascontiguousarray(
          _to_hf(t.kind, np.asarray(_lookup(params, t.path)), cfg), dtype=dtype
        )
        for t in shard
      }
      save_file(tensors, str(tmp / name), metadata={"format": "pt"})
      weight_map.update({t.hf_name: name for t in shard})
      del tensors
    if len(shards) > 1:
      total = sum(math.prod(t.hf_shape) for t in entries) * dtype.itemsize
      (tmp / INDEX_FILE).write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
      )
    (tmp / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    if vocab_path is not None:
      shutil.copyfile(vocab_path, tmp / VOCAB_FILE)
    _move_into_place(tmp, target)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return target


def _move_into_place(tmp: Path, target: Path) -> None:
  if target.is_dir() and any(target.iterdir()):
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / "checkpoint")
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
  else:
    if target.exists() and not target.is_dir():
      target.unlink()
    os.replace(tmp, target)  # an empty directory is replaced atomically

"""Every checkpoint t0jax reads, behind one entry point used by train, eval and predict.

  info = read_config(path)        # CheckpointInfo(cfg, format, step, vocabulary, root); no arrays
  cfg, params, info = load(path, shardings=..., cfg=..., dtype=...)

`read_config` reads configs only, so a bad path, a wrong model shape or a vocabulary mismatch
fails before any weight is read. `load` places each parameter directly in its target sharding.

Formats are modules of this package, tried in the order of `FORMATS`; the first whose `detect`
accepts the path reads it. Each format module provides:

  detect(path) -> bool             cheap: looks at marker files only, never raises
  read_config(path) -> T5Config    the model config, without reading any array
  load_params(path, cfg, shardings, *, scan_layers) -> (T5Config, params)
                                   `cfg`: the config to load into (the checkpoint's shapes, the
                                   caller's dtype, dropout, remat); `shardings`: a tree of
                                   shardings for the returned config's layout, or None (host or
                                   default device); `scan_layers`: the layout to return
  read_step(path) -> int           optional: formats that record a training step

To add a format, write such a module and add (name, what it looks like) to `FORMATS`.
"""

import dataclasses
import importlib
from typing import Callable, Optional, Union

from t0jax.checkpoints.hf import (
  CheckpointError,
  CheckpointNotFoundError,
  config_from_hf,
  config_to_hf,
  load_hf_checkpoint,
  save_hf_checkpoint,
)
from t0jax.model.config import RUNTIME_FIELDS, T5Config, describe_diff, shape_diff

# (module of this package, what a user points at), in detection order.
FORMATS = (
  ("hf", "a Hugging Face T5 directory (config.json + model.safetensors or its index)"),
  ("torch_bin", "a Hugging Face T5 directory with pytorch_model.bin or its index"),
  ("flax_msgpack", "a Hugging Face T5 directory with flax_model.msgpack or its index"),
  (
    "orbax",
    "a t0jax training checkpoint (a MODEL_DIR, its checkpoints/ folder, or one step folder)",
  ),
  ("t5x", "a T5X checkpoint (a checkpoint_<step> folder, its 'checkpoint' file, or a model dir)"),
)


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
  cfg: T5Config
  format: str  # a name of FORMATS
  step: Optional[int]  # None when the format records none
  vocabulary: Optional[str]  # the spiece.model kept with the checkpoint, if any
  root: str  # the path as given


def _module(name: str):
  # Imported on use: orbax is slow to import, and `t0jax predict` of an HF model never needs it.
  return importlib.import_module(f"t0jax.checkpoints.{name}")


def _exists(path: str) -> bool:
  from etils import epath

  return epath.Path(path).exists()


def _not_a_checkpoint(path: str, flag: str) -> CheckpointError:
  from etils import epath

  expected = "; or ".join(what for _, what in FORMATS)
  try:
    found = sorted(p.name for p in epath.Path(path).iterdir())
  except (OSError, NotADirectoryError):
    found = None
  seen = (
    ""
    if found is None
    else f" It holds: {', '.join(found[:8]) or 'nothing'}"
    + (", ..." if len(found) > 8 else "")
    + "."
  )
  return CheckpointError(
    f"{flag} {path}: not a checkpoint t0jax can read; expected {expected}." + seen
  )


def read_config(path, *, flag: str = "--checkpoint") -> CheckpointInfo:
  """Which format `path` is in, and its model config, step and vocabulary (no arrays read)."""
  from t0jax.data.vocab import checkpoint_vocabulary

  path = str(path)
  if not _exists(path):
    raise CheckpointNotFoundError(f"{flag} {path} does not exist.")
  for name, _ in FORMATS:
    module = _module(name)
    if module.detect(path):
      read_step = getattr(module, "read_step", None)
      vocabulary = checkpoint_vocabulary(path) if "://" not in path else None
      return CheckpointInfo(
        cfg=module.read_config(path),
        format=name,
        step=read_step(path) if read_step else None,
        vocabulary=str(vocabulary) if vocabulary else None,
        root=path,
      )
  raise _not_a_checkpoint(path, flag)


def _check_shape(info: CheckpointInfo, cfg: T5Config, flag: str, ignore=()) -> None:
  diff = {k: v for k, v in shape_diff(info.cfg, cfg).items() if k not in ignore}
  if diff:
    raise CheckpointError(
      f"{flag} {info.root} holds another model shape than the configured "
      f"one ({describe_diff(diff, 'checkpoint', 'config')}). Use the "
      "checkpoint's model config, or another checkpoint."
    )


def load(
  path,
  *,
  shardings: Union[None, Callable, object] = None,
  cfg: Optional[T5Config] = None,
  dtype: Optional[str] = None,
  flag: str = "--checkpoint",
  info: Optional[CheckpointInfo] = None,
):
  """(cfg, params, info) of the checkpoint at `path`, whatever its format.

  `cfg`: the model the caller expects; the checkpoint must have its shapes (else CheckpointError
  naming the fields), and its dtype, dropout, remat and layout (`scan_layers`) are kept. Without
  it the checkpoint's own config is used. `dtype` overrides the activation dtype. `shardings`:
  a tree of shardings for the parameters, or a function T5Config -> that tree; without it the
  parameters land on the default device. Parameters are float32. `info`: a `read_config`
  result already in hand (not read again).
  """
  import jax

  info = info or read_config(path, flag=flag)
  if cfg is not None:
    # An HF config that says "tied" may hold an untied head: that is known after loading.
    _check_shape(info, cfg, flag, ignore=("tie_word_embeddings",))
  runtime = {k: getattr(cfg if cfg is not None else info.cfg, k) for k in RUNTIME_FIELDS}
  if dtype:
    runtime["dtype"] = dtype
  target = info.cfg.replace(**runtime)
  placed = shardings(target) if callable(shardings) else shardings
  loaded, params = _module(info.format).load_params(
    str(path), target, placed, scan_layers=target.scan_layers
  )
  loaded = loaded.replace(**runtime)
  if cfg is not None:
    _check_shape(dataclasses.replace(info, cfg=loaded), cfg, flag)
  if placed is None:
    params = jax.device_put(params)  # once, not a host-to-device copy per use
  return loaded, params, dataclasses.replace(info, cfg=loaded)


__all__ = [
  "FORMATS",
  "CheckpointError",
  "CheckpointInfo",
  "CheckpointNotFoundError",
  "config_from_hf",
  "config_to_hf",
  "load",
  "load_hf_checkpoint",
  "read_config",
  "save_hf_checkpoint",
]

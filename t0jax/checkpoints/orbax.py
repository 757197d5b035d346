"""Orbax checkpoints of the train state, with the data position and the run's config beside it.

Orbax writes each step into a temporary directory and renames it when complete, so a crash or a
kill never leaves a checkpoint that looks valid but is not; partial directories are cleaned up.

As a format of t0jax/checkpoints/__init__.py (`detect`, `read_config`, `read_step`,
`load_params`), a t0jax checkpoint is named by its MODEL_DIR, its `checkpoints/` folder (the
latest step is read) or one step folder.
"""

import json
import logging
import os
from typing import Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from t0jax.model.config import RUNTIME_FIELDS, T5Config, describe_diff, shape_diff

log = logging.getLogger(__name__)


class IncompatibleCheckpointError(ValueError):
  pass


class Checkpointer:
  """Save / restore `{"state": train state, "data": data position, "config": run config}`."""

  def __init__(self, directory: str, keep: Optional[int] = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      create=True,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
    )
    self.manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=("state", "data", "config")
    )

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def save(self, step: int, state, data: Mapping, config: Mapping, force: bool = False) -> bool:
    return self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(dict(data)),
        config=ocp.args.JsonSave(dict(config)),
      ),
      force=force,
    )

  def read_meta(self, step: int):
    restored = self.manager.restore(
      step, args=ocp.args.Composite(data=ocp.args.JsonRestore(), config=ocp.args.JsonRestore())
    )
    return restored["data"], restored["config"]

  def restore(self, step: int, abstract_state, expected_config: Optional[Mapping] = None):
    """Restore onto the shardings in `abstract_state` (any mesh shape: Orbax reshards)."""
    data, config = self.read_meta(step)
    if expected_config is not None:
      diff = shape_diff(
        T5Config.from_dict(config.get("model", {}), f"{self.directory}/{step}"),
        T5Config.from_dict(expected_config.get("model", {})),
      )
      if diff:
        details = describe_diff(diff)
        raise IncompatibleCheckpointError(
          f"Checkpoint {self.directory}/{step} holds a different model ({details}). Nothing was "
          "overwritten. Use the checkpoint's model config, or a new --model_dir."
        )
    restored = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return restored["state"], data, config

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_with_shardings(shapes, shardings):
  return jax.tree.map(
    lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
  )


def write_json_atomic(path: str, obj) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def checkpoint_location(path: str):
  """A run dir (MODEL_DIR), its `checkpoints` dir, or one step dir -> (checkpoints dir, step)."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, "checkpoints")):
    path = os.path.join(path, "checkpoints")
  if os.path.isdir(os.path.join(path, "state")) and os.path.basename(path).isdigit():
    return os.path.dirname(path), int(os.path.basename(path))
  if not os.path.isdir(path):
    raise FileNotFoundError(f"Checkpoint {path!r} does not exist.")
  steps = sorted(
    int(d)
    for d in os.listdir(path)
    if d.isdigit() and os.path.isdir(os.path.join(path, d, "state"))
  )
  if not steps:
    raise FileNotFoundError(
      f"No checkpoint steps in {path!r} (expected step directories written by `t0jax train`)."
    )
  return path, steps[-1]


def detect(path) -> bool:
  try:
    checkpoint_location(str(path))
  except (FileNotFoundError, ValueError, OSError):
    return False
  return True


def _read_run_config(path: str):
  ckpt_dir, step = checkpoint_location(str(path))
  ckpt = Checkpointer(ckpt_dir, keep=None, async_save=False)
  try:
    _, config = ckpt.read_meta(step)
  finally:
    ckpt.close()
  return config, step


def read_config(path) -> T5Config:
  """The model config the run saved beside its parameters (no array is read)."""
  config, step = _read_run_config(path)
  return T5Config.from_dict(config["model_full"], f"{path} (step {step})")


def read_step(path) -> int:
  return checkpoint_location(str(path))[1]


def load_params(
  path, cfg: Optional[T5Config] = None, shardings=None, *, scan_layers: Optional[bool] = None
):
  """(T5Config, params) of a t0jax checkpoint: only the parameters (not the optimizer state).

  `cfg` supplies the settings that may differ from the run's (dtype, dropout, remat, layout);
  `scan_layers` (default: `cfg`'s, else the run's) picks the layout, converted if the run saved
  the other one. Parameters land in `shardings` (a tree for the returned config's layout), or on
  the default device without.
  """
  from t0jax.model import init_params
  from t0jax.model.layout import to_layout

  saved = read_config(path)
  # The run's shapes; the caller's numerics and layout.
  cfg = saved if cfg is None else saved.replace(**{k: getattr(cfg, k) for k in RUNTIME_FIELDS})
  scanned = cfg.scan_layers if scan_layers is None else scan_layers
  cfg = cfg.replace(scan_layers=scanned)
  same_layout = saved.scan_layers == scanned
  shapes = jax.eval_shape(lambda: init_params(saved, jax.random.key(0)))
  if shardings is None or not same_layout:  # restored on one device, then laid out and placed
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    restore_shardings = jax.tree.map(lambda _: device, shapes)
  else:
    restore_shardings = shardings
  ckpt_dir, step = checkpoint_location(str(path))
  ckpt = Checkpointer(ckpt_dir, keep=None, async_save=False)
  try:
    restored = ckpt.manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
          item={"params": shapes},
          restore_args={
            "params": jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s), restore_shardings)
          },
          partial_restore=True,
        )
      ),
    )
  finally:
    ckpt.close()
  params = restored["state"]["params"]
  if not same_layout:
    params = to_layout(jax.tree.map(np.asarray, params), cfg, scanned)
    if shardings is not None:
      params = jax.tree.map(
        lambda x, s: jax.make_array_from_callback(x.shape, s, lambda index: x[index]),
        params,
        shardings,
      )
  return cfg, params

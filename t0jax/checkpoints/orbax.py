"""Orbax checkpoints of the train state, with the data position and the run's config beside it.

Orbax writes each step into a temporary directory and renames it when complete, so a crash or a
kill never leaves a checkpoint that looks valid but is not; partial directories are cleaned up.
"""
import dataclasses
import json
import logging
import os
from typing import Any, Mapping, Optional

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class IncompatibleCheckpointError(ValueError):
  pass


def config_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict:
  keys = set(saved) | set(current)
  return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}


# Settings that may change between runs of the same model: they change numerics, not shapes.
_RUNTIME_FIELDS = {"dropout_rate", "dtype", "remat_policy", "scan_layers"}


def model_signature(cfg) -> dict:
  d = dataclasses.asdict(cfg)
  d["mlp_activations"] = list(d["mlp_activations"])
  return {k: v for k, v in d.items() if k not in _RUNTIME_FIELDS}


class Checkpointer:
  """Save / restore `{"state": train state, "data": data position, "config": run config}`."""

  def __init__(self, directory: str, keep: Optional[int] = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "data", "config"))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def save(self, step: int, state, data: Mapping, config: Mapping, force: bool = False) -> bool:
    return self.manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      data=ocp.args.JsonSave(dict(data)),
                                      config=ocp.args.JsonSave(dict(config))),
        force=force)

  def read_meta(self, step: int):
    restored = self.manager.restore(step, args=ocp.args.Composite(
        data=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
    return restored["data"], restored["config"]

  def restore(self, step: int, abstract_state, expected_config: Optional[Mapping] = None):
    """Restore onto the shardings in `abstract_state` (any mesh shape: Orbax reshards)."""
    data, config = self.read_meta(step)
    if expected_config is not None:
      diff = config_diff(config.get("model", {}), expected_config.get("model", {}))
      if diff:
        details = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise IncompatibleCheckpointError(
            f"Checkpoint {self.directory}/{step} holds a different model ({details}). Nothing was "
            "overwritten. Use the checkpoint's model config, or a new --model_dir.")
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"], data, config

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_with_shardings(shapes, shardings):
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings)


def is_checkpoint_dir(path: str) -> bool:
  """A t0jax (Orbax) checkpoint: a step directory with a `state` item, or a run directory."""
  return os.path.isdir(os.path.join(path, "state")) or os.path.isdir(
      os.path.join(path, "checkpoints"))


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
  if os.path.isdir(os.path.join(path, "state")):
    return os.path.dirname(path), int(os.path.basename(path))
  if not os.path.isdir(path):
    raise FileNotFoundError(f"Checkpoint {path!r} does not exist.")
  steps = sorted(int(d) for d in os.listdir(path) if d.isdigit())
  if not steps:
    raise FileNotFoundError(f"No checkpoint steps in {path!r} (expected step directories "
                            "written by `t0jax train`).")
  return path, steps[-1]


def load_params(path: str, shardings=None):
  """(T5Config, params) of a t0jax checkpoint: a MODEL_DIR, its checkpoints dir, or a step dir.

  Only the parameters are read (not the optimizer state). Without `shardings` they land on the
  default device.
  """
  from t0jax.model import T5Config, init_params
  ckpt_dir, step = checkpoint_location(path)
  ckpt = Checkpointer(ckpt_dir, keep=None, async_save=False)
  _, config = ckpt.read_meta(step)
  full = dict(config["model_full"])
  full["mlp_activations"] = tuple(full["mlp_activations"])
  cfg = T5Config(**full)
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  if shardings is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: sharding, shapes)
  restored = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      item={"params": shapes},
      restore_args={"params": jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s),
                                           shardings)},
      partial_restore=True)))
  ckpt.close()
  return cfg, restored["state"]["params"]

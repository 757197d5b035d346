"""The train state: step, parameters, optimizer state; its shapes, shardings and first value.

On disk (Orbax) it is the plain tree {"step", "params", "opt_state"}, so checkpoints written
before this class existed restore unchanged and `checkpoints.orbax.load_params` reads "params".
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from t0jax.model import T5Config, init_params, logical_axes
from t0jax.train import optim


@flax.struct.dataclass
class TrainState:
  step: Any  # int32 scalar: optimizer updates applied (T5X: from the pre-training checkpoint's)
  params: Any
  opt_state: Any

  def as_tree(self) -> dict:
    """The checkpointed tree."""
    return {"step": self.step, "params": self.params, "opt_state": self.opt_state}

  @classmethod
  def from_tree(cls, tree) -> "TrainState":
    return cls(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"])


def abstract_state(cfg: T5Config, tx, partitioner):
  """(shapes, shardings), both TrainStates, computed without allocating anything."""
  params = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  opt_state = jax.eval_shape(tx.init, params)
  param_sh = partitioner.shardings(logical_axes(cfg))
  shapes = TrainState(jax.ShapeDtypeStruct((), jnp.int32), params, opt_state)
  shardings = TrainState(
    partitioner.replicated, param_sh, optim.state_shardings(opt_state, params, param_sh)
  )
  return shapes, shardings


def initial_state(params, tx, shardings: TrainState, step: int = 0) -> TrainState:
  """A fresh optimizer state for `params` (already placed), at `step`."""
  opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
  return TrainState(jax.device_put(jnp.int32(step), shardings.step), params, opt_state)

"""Optimizer and learning-rate schedules (optax), and optimizer-state shardings."""

from typing import Callable, Optional

import gin
import jax
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P


@gin.configurable(module="t0jax.optim")
def constant_schedule(value: float = 1e-3) -> Callable:
  """T0's schedule: a constant learning rate."""
  return optax.constant_schedule(value)


@gin.configurable(module="t0jax.optim")
def rsqrt_schedule(scale: float = 1.0, warmup_steps: int = 10_000) -> Callable:
  """T5's pre-training schedule: scale / sqrt(max(step, warmup_steps))."""
  return lambda step: (
    scale * jax.lax.rsqrt(jax.numpy.maximum(step, warmup_steps).astype(jax.numpy.float32))
  )


@gin.configurable(module="t0jax.optim")
def adafactor(
  learning_rate: Callable = gin.REQUIRED,
  decay_rate: float = 0.8,
  clipping_threshold: Optional[float] = 1.0,
  multiply_by_parameter_scale: bool = True,
  min_dim_size_to_factor: int = 128,
  momentum: Optional[float] = None,
  weight_decay_rate: Optional[float] = None,
  epsilon1: float = 1e-30,
) -> optax.GradientTransformation:
  """optax Adafactor with T5X's defaults (factored second moments, no momentum, update
  clipping at RMS 1, updates scaled by parameter RMS, epsilon1 1e-30).

  `epsilon1` is added to the squared gradient (T5X's name). At 1e-30 an element whose gradient
  is rounding noise (1e-10 where its neighbours have 1e-3) still gets a full-size update whose
  sign is the noise's: two runs that add the same gradient in another order (another mesh) can
  move that element in opposite directions. Raise it (e.g. 1e-12) to compare layouts.
  """
  return optax.adafactor(
    learning_rate=learning_rate,
    decay_rate=decay_rate,
    clipping_threshold=clipping_threshold,
    multiply_by_parameter_scale=multiply_by_parameter_scale,
    min_dim_size_to_factor=min_dim_size_to_factor,
    momentum=momentum,
    weight_decay_rate=weight_decay_rate,
    eps=epsilon1,
    factored=True,
  )


def _leaf_spec(state_shape, param_shape, param_spec: P) -> P:
  """A state leaf inherits its parameter's axes; a factored moment drops the reduced axis."""
  state_shape, param_shape = tuple(state_shape), tuple(param_shape)
  spec = tuple(param_spec) + (None,) * (len(param_shape) - len(param_spec))
  if state_shape == param_shape:
    return P(*spec)
  if len(state_shape) == len(param_shape) - 1:
    for i in range(len(param_shape)):
      if param_shape[:i] + param_shape[i + 1 :] == state_shape:
        return P(*(spec[:i] + spec[i + 1 :]))
  return P()


def state_shardings(opt_state_shapes, params_shapes, param_shardings):
  """Shardings for an optax state: every sub-tree shaped like the parameters inherits theirs."""
  params_def = jax.tree.structure(params_shapes)
  leaves_params = jax.tree.leaves(params_shapes)
  leaves_shard = jax.tree.leaves(param_shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
  mesh = leaves_shard[0].mesh

  def visit(node):
    if jax.tree.structure(node) == params_def and params_def.num_leaves > 1:
      leaves = [
        NamedSharding(mesh, _leaf_spec(s.shape, p.shape, sh.spec))
        for s, p, sh in zip(jax.tree.leaves(node), leaves_params, leaves_shard)
      ]
      return jax.tree.unflatten(params_def, leaves)
    if hasattr(node, "shape"):
      return NamedSharding(mesh, P())
    children, treedef = jax.tree.flatten(node, is_leaf=lambda x: x is not node)
    if treedef.num_leaves == 0 or (len(children) == 1 and children[0] is node):
      return jax.tree.map(lambda _: NamedSharding(mesh, P()), node)
    return jax.tree.unflatten(treedef, [visit(c) for c in children])

  return visit(opt_state_shapes)


def num_bytes(tree) -> int:
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))

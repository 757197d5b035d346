"""T5 building blocks in flax linen. Every parameter carries its logical axis names."""

import functools
import math
from typing import Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


Array = jax.Array
_partitioned = nn.with_logical_partitioning
constrain = nn.with_logical_constraint


class RMSNorm(nn.Module):
  """T5 layer norm: no mean subtraction, no bias, computed in float32."""

  epsilon: float = 1e-6
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param(
      "scale", _partitioned(nn.initializers.ones, ("embed",)), (x.shape[-1],), jnp.float32
    )
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
    return (y * scale).astype(self.dtype)


def relative_position_buckets(
  qlen: int, klen: int, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
  """Bucket ids [qlen, klen] of (key position - query position), computed on the host.

  The float32 arithmetic follows Hugging Face's T5 exactly (no epsilon inside the log), so bucket
  boundaries agree with the checkpoints' reference implementation bit for bit.
  """
  rel = np.arange(klen)[None, :] - np.arange(qlen)[:, None]
  buckets = np.zeros_like(rel)
  if bidirectional:
    num_buckets //= 2
    buckets += (rel > 0).astype(rel.dtype) * num_buckets
    rel = np.abs(rel)
  else:
    rel = -np.minimum(rel, 0)
  max_exact = num_buckets // 2
  with np.errstate(divide="ignore", invalid="ignore"):
    large = max_exact + (
      np.log(rel.astype(np.float32) / np.float32(max_exact))
      / np.float32(math.log(max_distance / max_exact))
      * np.float32(num_buckets - max_exact)
    ).astype(np.int64)
  large = np.minimum(large, num_buckets - 1)
  return (buckets + np.where(rel < max_exact, rel, large)).astype(np.int32)


class RelativePositionBias(nn.Module):
  """One relative-position bias table per stack, shared by all its layers."""

  num_buckets: int
  max_distance: int
  num_heads: int
  bidirectional: bool
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, qlen: int, klen: int) -> Array:
    table = self.param(
      "rel_embedding",
      _partitioned(
        nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), ("heads", "relpos_buckets")
      ),
      (self.num_heads, self.num_buckets),
      jnp.float32,
    )
    ids = relative_position_buckets(
      qlen, klen, self.bidirectional, self.num_buckets, self.max_distance
    )
    # A gather, not a one-hot contraction: the contraction's gradient is a [heads, q, k] x
    # [q, k, buckets] product that cost XLA:CPU ~3% of a T5-small training step. 'heads' is a
    # pass-through axis of the gather, so it still partitions over 'heads'.
    bias = jnp.take(table, jnp.asarray(ids), axis=1)
    return bias[None].astype(self.dtype)  # [1, heads, q, k]


class DenseGeneral(nn.Module):
  """A bias-free dense layer over the last `len(in_axis)` axes, kernel declared with its axes.

  Written here because flax's DenseGeneral creates a flattened 2-D kernel and re-boxes it, which
  applies the kernel's 3-D logical constraint to a 2-D value and fails under `jax.set_mesh`.
  """

  features: Tuple[int, ...]
  axes: Tuple[str, ...]
  num_in: int = 1
  init: Callable = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    in_shape = x.shape[x.ndim - self.num_in :]
    shape = tuple(in_shape) + tuple(self.features)
    in_axis = tuple(range(self.num_in))
    out_axis = tuple(range(self.num_in, len(shape)))
    init = self.init or _scaled_init(1.0, "normal")
    kernel = self.param(
      "kernel", _partitioned(init(in_axis, out_axis), self.axes), shape, jnp.float32
    )
    # One 2-D matmul over flattened (free, row-major) views. A contraction over several axes, or
    # one whose gradient contracts over (batch, length), makes XLA:CPU transpose activations
    # element by element before its matmuls; flat operands cut a T5-small training step by ~16%.
    rows = math.prod(x.shape[: x.ndim - self.num_in])
    y = jnp.dot(
      x.astype(self.dtype).reshape(rows, math.prod(in_shape)),
      kernel.astype(self.dtype).reshape(math.prod(in_shape), math.prod(self.features)),
    )
    return y.reshape(x.shape[: x.ndim - self.num_in] + tuple(self.features))


def _scaled_init(scale, distribution):
  """T5X's fan-in variance scaling, for kernels whose fan-in spans several axes."""
  return lambda in_axis, out_axis: nn.initializers.variance_scaling(
    scale, "fan_in", distribution, in_axis=in_axis, out_axis=out_axis
  )


def _dense(features, axes, num_in=1, init=None, name=None, dtype=jnp.float32):
  features = features if isinstance(features, tuple) else (features,)
  return DenseGeneral(features, axes, num_in, init, dtype, name=name)


class MultiHeadAttention(nn.Module):
  """T5 attention: unscaled logits in float32, optional additive bias, key/value cache."""

  num_heads: int
  head_dim: int
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    inputs_q: Array,
    inputs_kv: Array,
    mask: Optional[Array],
    bias: Optional[Array],
    *,
    deterministic: bool,
    decode: bool = False,
  ) -> Array:
    heads_kv = (self.num_heads, self.head_dim)
    # T5X's init: the 1/sqrt(head_dim) attention scale lives in the query init, not the logits.
    query_init = _scaled_init(1.0 / self.head_dim, "normal")
    q = _dense(heads_kv, ("embed", "heads", "kv"), init=query_init, name="query", dtype=self.dtype)(
      inputs_q
    )
    k = _dense(heads_kv, ("embed", "heads", "kv"), name="key", dtype=self.dtype)(inputs_kv)
    v = _dense(heads_kv, ("embed", "heads", "kv"), name="value", dtype=self.dtype)(inputs_kv)
    q = constrain(q, ("batch", "length", "heads", "kv"))
    k = constrain(k, ("batch", "length", "heads", "kv"))
    v = constrain(v, ("batch", "length", "heads", "kv"))

    if decode:
      k, v, mask, bias = self._update_cache(k, v, mask, bias)

    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    if bias is not None:
      logits = logits + bias.astype(jnp.float32)
    if mask is not None:
      logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    if not deterministic and self.dropout_rate > 0:
      weights = nn.Dropout(self.dropout_rate)(weights, deterministic=False)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    out = constrain(out, ("batch", "length", "heads", "kv"))
    return _dense(
      inputs_q.shape[-1], ("heads", "kv", "embed"), num_in=2, name="out", dtype=self.dtype
    )(out)

  def _update_cache(self, k, v, mask, bias):
    """Autoregressive step: store this position's key/value, attend over the filled prefix.

    The first call (at cache initialisation) sees the full decode length and only allocates.
    """
    initialized = self.has_variable("cache", "cached_key")
    cached_k = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
    cached_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    if not initialized:
      return k, v, mask, bias
    batch, max_len, heads, depth = cached_k.value.shape
    if k.shape[1] != 1:
      raise ValueError(f"Cached decoding takes one token per step, got length {k.shape[1]}.")
    i = index.value
    k = jax.lax.dynamic_update_slice(cached_k.value, k, (0, i, 0, 0))
    v = jax.lax.dynamic_update_slice(cached_v.value, v, (0, i, 0, 0))
    cached_k.value, cached_v.value, index.value = k, v, i + 1
    step_mask = (jnp.arange(max_len) <= i)[None, None, None, :]
    mask = step_mask if mask is None else jnp.logical_and(mask, step_mask)
    if bias is not None:  # bias holds the full [.., max_len, max_len] table: take row i
      bias = jax.lax.dynamic_slice_in_dim(bias, i, 1, axis=-2)
    return k, v, mask, bias


class MlpBlock(nn.Module):
  """T5 MLP: gated (v1.1: gelu * linear) or plain (v1.0: relu)."""

  d_ff: int
  activations: Sequence[str]
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, deterministic: bool) -> Array:
    fns = {
      "gelu": functools.partial(jax.nn.gelu, approximate=True),
      "relu": jax.nn.relu,
      "linear": lambda y: y,
    }
    names = (
      ["wi"] if len(self.activations) == 1 else [f"wi_{i}" for i in range(len(self.activations))]
    )
    h = None
    for name, act in zip(names, self.activations):
      y = fns[act](
        _dense(
          self.d_ff,
          ("embed", "mlp"),
          init=_scaled_init(1.0, "truncated_normal"),
          name=name,
          dtype=self.dtype,
        )(x)
      )
      h = y if h is None else h * y
    h = constrain(h, ("batch", "length", "mlp"))
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return _dense(
      x.shape[-1],
      ("mlp", "embed"),
      init=_scaled_init(1.0, "truncated_normal"),
      name="wo",
      dtype=self.dtype,
    )(h)


def make_attention_mask(
  query_valid: Array,
  key_valid: Array,
  query_segments: Optional[Array] = None,
  key_segments: Optional[Array] = None,
  causal: bool = False,
) -> Array:
  """Boolean mask [batch, 1, q, k]: valid pairs, same packed segment, and (optionally) causal."""
  mask = query_valid[:, :, None] & key_valid[:, None, :]
  if query_segments is not None:
    mask = mask & (query_segments[:, :, None] == key_segments[:, None, :])
  if causal:
    q, k = query_valid.shape[1], key_valid.shape[1]
    mask = mask & (jnp.arange(q)[:, None] >= jnp.arange(k)[None, :])[None]
  return mask[:, None]

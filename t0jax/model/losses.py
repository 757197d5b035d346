"""T5X's cross entropy with z-loss and label smoothing, and its loss normalisation."""

import math
from typing import Union

import jax
import jax.numpy as jnp

NUM_REAL_TARGET_TOKENS = "num_real_target_tokens"
NUM_TOTAL_TARGET_TOKENS = "num_total_target_tokens"
_ALIASES = {"batch_x_length": NUM_TOTAL_TARGET_TOKENS}  # t0jax's earlier name


def cross_entropy_with_z_loss(
  logits, targets, weights, z_loss: float = 0.0, label_smoothing: float = 0.0
):
  """Per-token loss [batch, length] (weights applied) and z-loss part, in float32.

  z-loss (T5X: 1e-4) pushes log Z towards 0, keeping bf16 logits well-conditioned. With label
  smoothing, the entropy of the smoothed target is subtracted as in T5X, so a perfect model
  still reaches 0 and losses stay comparable across smoothing values.
  """
  logits = logits.astype(jnp.float32)
  vocab = logits.shape[-1]
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1) if vocab > 1 else 0.0
  log_z = jax.nn.logsumexp(logits, axis=-1)
  log_probs = logits - log_z[..., None]
  onehot = jax.nn.one_hot(targets, vocab, dtype=jnp.float32) * (confidence - low) + low
  loss = -jnp.sum(onehot * log_probs, axis=-1) - _target_entropy(confidence, low, vocab)
  zl = z_loss * jnp.square(log_z)
  w = weights.astype(jnp.float32)
  return (loss + zl) * w, zl * w


def _target_entropy(confidence: float, low: float, vocab: int) -> float:
  if low == 0.0:
    return 0.0
  return -(confidence * math.log(confidence) + (vocab - 1) * low * math.log(low))


def parse_loss_normalizing_factor(value, name: str = "LOSS_NORMALIZING_FACTOR"):
  """A gin/flag value -> None (plain sums, Mesh TF style), a positive float, or one of
  NUM_REAL_TARGET_TOKENS / NUM_TOTAL_TARGET_TOKENS (T5X's names, accepted in any case)."""
  if isinstance(value, str):
    key = _ALIASES.get(value.strip().lower(), value.strip().lower())
    if key in (NUM_REAL_TARGET_TOKENS, NUM_TOTAL_TARGET_TOKENS):
      return key
    value = None if key == "none" else _as_number(key)
  if value is None:
    return None
  if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
    return float(value)
  raise ValueError(
    f"{name}={value!r} is not a loss normalisation: use "
    "'NUM_REAL_TARGET_TOKENS' (the default), 'NUM_TOTAL_TARGET_TOKENS', a positive "
    "number, or None (sum over tokens)."
  )


def _as_number(text: str):
  try:
    return float(text)
  except ValueError:
    return text  # refused by the caller, with the flag's name


def loss_normalizer(
  weights, factor: Union[str, float, None] = NUM_REAL_TARGET_TOKENS, num_real=None
):
  """What a step's summed loss is divided by, for the batch's target `weights` [batch, length]:
  tokens with weight, all target positions, a constant, or 1 (`None`). `num_real`: the weights'
  sum when the step already has it (accumulated with the loss), so it is not reduced again."""
  factor = parse_loss_normalizing_factor(factor)
  if factor == NUM_REAL_TARGET_TOKENS:
    total = jnp.sum(weights.astype(jnp.float32)) if num_real is None else num_real
    return jnp.maximum(total, 1.0)
  if factor == NUM_TOTAL_TARGET_TOKENS:
    return jnp.float32(weights.size)
  return jnp.float32(1.0 if factor is None else factor)


def shift_right(targets, start_token: int = 0, segment_ids=None):
  """Decoder inputs: targets shifted right with the start token (0), per packed segment."""
  shifted = jnp.pad(targets, ((0, 0), (1, 0)), constant_values=start_token)[:, :-1]
  if segment_ids is not None:
    starts = segment_ids != jnp.pad(segment_ids, ((0, 0), (1, 0)))[:, :-1]
    shifted = jnp.where(starts, start_token, shifted)
  return shifted

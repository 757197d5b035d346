"""T5X's cross entropy with z-loss and loss normalisation."""
from typing import Optional

import jax
import jax.numpy as jnp


def cross_entropy_with_z_loss(logits, targets, weights, z_loss: float = 0.0,
                              label_smoothing: float = 0.0):
  """Per-token loss [batch, length] (weights applied) and z-loss part, in float32.

  z-loss (T5X: 1e-4) pushes log Z towards 0, keeping bf16 logits well-conditioned.
  """
  logits = logits.astype(jnp.float32)
  vocab = logits.shape[-1]
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1) if vocab > 1 else 0.0
  log_z = jax.nn.logsumexp(logits, axis=-1)
  log_probs = logits - log_z[..., None]
  onehot = jax.nn.one_hot(targets, vocab, dtype=jnp.float32) * (confidence - low) + low
  loss = -jnp.sum(onehot * log_probs, axis=-1)
  zl = z_loss * jnp.square(log_z)
  w = weights.astype(jnp.float32)
  return (loss + zl) * w, zl * w


def loss_normalizer(weights, mode: str = "num_real_target_tokens",
                    target_length: Optional[int] = None):
  """T5X's `loss_normalizing_factor`: tokens with weight, a constant, or none."""
  if mode == "num_real_target_tokens":
    return jnp.maximum(jnp.sum(weights.astype(jnp.float32)), 1.0)
  if mode == "none":
    return jnp.float32(1.0)
  if mode == "batch_x_length":
    return jnp.float32(weights.shape[0] * (target_length or weights.shape[1]))
  raise ValueError(f"Unknown loss normalisation {mode!r}: use 'num_real_target_tokens', "
                   "'batch_x_length' or 'none'.")


def shift_right(targets, start_token: int = 0, segment_ids=None):
  """Decoder inputs: targets shifted right with the start token (0), per packed segment."""
  shifted = jnp.pad(targets, ((0, 0), (1, 0)), constant_values=start_token)[:, :-1]
  if segment_ids is not None:
    starts = segment_ids != jnp.pad(segment_ids, ((0, 0), (1, 0)))[:, :-1]
    shifted = jnp.where(starts, start_token, shifted)
  return shifted

"""The model seam (T5X's `EncoderDecoderModel`): the only place that runs the network.

The trainer asks it for the loss of a batch, the evaluator and `t0jax predict` for the
log-likelihood of targets given inputs (encoding each input once) and for generated outputs;
none of them calls `Transformer.apply` or reads the network's arguments off a batch. Batches use
seqio's `EncDecFeatureConverter` keys (`encoder_input_tokens`, `decoder_target_tokens`, ...).

Losses come back as sums with the weight they were summed over, never as means, so gradient
accumulation and the loss normalisation (once per step, `losses.loss_normalizer`) stay exact.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from t0jax.model.config import T5Config
from t0jax.model.losses import cross_entropy_with_z_loss
from t0jax.model.network import Transformer

LOSS_SUMS = ("loss_sum", "z_loss_sum", "correct", "weight")
_CROSS_ATTENTION = "encoder_decoder_attention"  # the decoder layers' cross-attention module


def target_weights(batch):
  """Loss weight of every target token: the converter's `decoder_loss_weights`, else non-pad."""
  targets = batch["decoder_target_tokens"]
  return batch.get("decoder_loss_weights", targets > 0).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class EncoderDecoderModel:
  """A T5 network plus what train, eval and predict need from it. Hashable, so jitted
  functions take it as a static argument."""

  module: Transformer

  @classmethod
  def from_config(cls, cfg: T5Config) -> "EncoderDecoderModel":
    return cls(Transformer(cfg))

  @property
  def config(self) -> T5Config:
    return self.module.config

  # --- loss and metrics of a batch ------------------------------------------------------------

  def logits(self, params, batch, *, dropout_rng=None):
    """float32 [batch, target_length, vocab]; dropout on when `dropout_rng` is given."""
    dropout = dropout_rng is not None and self.config.dropout_rate > 0
    return self.module.apply(
      {"params": params},
      batch["encoder_input_tokens"],
      batch["decoder_input_tokens"],
      batch["decoder_target_tokens"],
      batch.get("encoder_segment_ids"),
      batch.get("decoder_segment_ids"),
      enable_dropout=dropout,
      rngs={"dropout": dropout_rng} if dropout else None,
    )

  def loss_sums(
    self, params, batch, *, dropout_rng=None, z_loss: float = 0.0, label_smoothing: float = 0.0
  ):
    """(summed loss, {loss_sum, z_loss_sum, correct, weight}): token sums over the batch."""
    logits = self.logits(params, batch, dropout_rng=dropout_rng)
    targets = batch["decoder_target_tokens"]
    weights = target_weights(batch)
    loss, zl = cross_entropy_with_z_loss(logits, targets, weights, z_loss, label_smoothing)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32) * weights
    aux = {
      "loss_sum": loss.sum(),
      "z_loss_sum": zl.sum(),
      "correct": correct.sum(),
      "weight": weights.sum(),
    }
    return loss.sum(), aux

  # --- log-likelihood of targets given inputs -------------------------------------------------

  def encode(self, params, encoder_tokens):
    return self.module.apply({"params": params}, encoder_tokens, method=type(self.module).encode)

  def token_log_probs(
    self, params, encoded, encoder_tokens, decoder_inputs, decoder_targets, decoder_segments=None
  ):
    """log p(target token) [rows, length], 0 at padding, given encodings of the inputs.

    With `decoder_segments`, a row holds several targets one after another (packed choices):
    self-attention stays inside each target while cross-attention sees the whole input.
    """
    if decoder_segments is None:
      logits = self.module.apply(
        {"params": params},
        encoded,
        encoder_tokens,
        decoder_inputs,
        decoder_targets,
        method=type(self.module).decode,
      )
    else:
      logits = self._packed_logits(
        params, encoded, encoder_tokens, decoder_inputs, decoder_targets, decoder_segments
      )
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(log_probs, decoder_targets[..., None], axis=-1)[..., 0]
    return jnp.where(decoder_targets > 0, picked, 0.0)

  def _packed_logits(
    self, params, encoded, encoder_tokens, decoder_inputs, decoder_targets, decoder_segments
  ):
    # The network ties its self- and cross-attention masks to the same segment ids; packed
    # choices need segments for self-attention only, so the cross-attention mask is replaced
    # through flax's public method interception, and a rename of the module fails loudly.
    cross_mask = (encoder_tokens > 0)[:, None, None, :]
    replaced = []

    def interceptor(next_fun, args, kwargs, context):
      if context.method_name == "__call__" and context.module.name == _CROSS_ATTENTION:
        replaced.append(context.module.name)
        args = (args[0], args[1], cross_mask) + tuple(args[3:])
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
      logits = self.module.apply(
        {"params": params},
        encoded,
        encoder_tokens,
        decoder_inputs,
        decoder_targets,
        jnp.zeros_like(encoder_tokens),
        decoder_segments,
        method=type(self.module).decode,
      )
    if not replaced:
      raise RuntimeError(
        f"Packed target scoring found no '{_CROSS_ATTENTION}' module in the decoder (was the "
        "network changed?). Score unpacked, or update t0jax/model/models.py to the network's "
        "cross-attention module name."
      )
    return logits

  def score_batch(self, params, batch):
    """T5X's `score_batch`: per row, the summed log-probability of its targets (float32)."""
    encoded = self.encode(params, batch["encoder_input_tokens"])
    return self.token_log_probs(
      params,
      encoded,
      batch["encoder_input_tokens"],
      batch["decoder_input_tokens"],
      batch["decoder_target_tokens"],
    ).sum(axis=-1)

  # --- generation -----------------------------------------------------------------------------

  def init_cache(self, params, encoded, encoder_tokens, max_decode_length: int):
    """The decoder's key/value cache for `max_decode_length` steps."""
    dummy = jnp.zeros((encoder_tokens.shape[0], max_decode_length), jnp.int32)
    _, variables = self.module.apply(
      {"params": params},
      encoded,
      encoder_tokens,
      dummy,
      dummy,
      decode=True,
      max_decode_length=max_decode_length,
      mutable=["cache"],
      method=type(self.module).decode,
    )
    return variables["cache"]

  def decode_step(self, params, cache, encoded, encoder_tokens, tokens, max_decode_length: int):
    """Logits [batch, vocab] for the next position, and the updated cache."""
    logits, variables = self.module.apply(
      {"params": params, "cache": cache},
      encoded,
      encoder_tokens,
      tokens,
      decode=True,
      max_decode_length=max_decode_length,
      mutable=["cache"],
      method=type(self.module).decode,
    )
    return logits[:, -1], variables["cache"]

  def predict_batch(
    self,
    params,
    encoder_tokens,
    *,
    max_decode_length: int,
    num_beams: int = 1,
    length_penalty: float = 0.6,
    eos_id: Optional[int] = None,
  ):
    """T5X's `predict_batch`: int32 [batch, max_decode_length] outputs, 0 after EOS; greedy
    for one beam, else beam search (t0jax/model/decoding.py)."""
    from t0jax.model import decoding  # decoding drives this object's cache methods

    kw = {} if eos_id is None else {"eos_id": eos_id}
    if num_beams == 1:
      return decoding.greedy_decode(
        self, params, encoder_tokens, max_decode_length=max_decode_length, **kw
      )
    return decoding.beam_search(
      self,
      params,
      encoder_tokens,
      max_decode_length=max_decode_length,
      num_beams=num_beams,
      length_penalty=length_penalty,
      **kw,
    )


def as_model(model) -> EncoderDecoderModel:
  """The seam for a network (`Transformer`), a config, or a seam already."""
  if isinstance(model, EncoderDecoderModel):
    return model
  if isinstance(model, Transformer):
    return EncoderDecoderModel(model)
  if isinstance(model, T5Config):
    return EncoderDecoderModel.from_config(model)
  raise TypeError(
    f"Expected a t0jax Transformer, T5Config or EncoderDecoderModel, got {type(model).__name__}."
  )

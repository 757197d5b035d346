"""The T5 encoder-decoder (v1.1 and v1.0) as flax linen modules.

Packing: segment ids keep packed examples from attending to each other. Relative position biases
are computed from index differences, which equal position differences inside a packed segment,
so `*_positions` arguments are accepted for T5X API compatibility and not needed.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from t0jax.model.config import T5Config, remat_policy
from t0jax.model.layers import (
  DenseGeneral,
  MlpBlock,
  MultiHeadAttention,
  RelativePositionBias,
  RMSNorm,
  _scaled_init,
  constrain,
  make_attention_mask,
)

Array = jax.Array
_ACT = ("batch", "length", "embed")


class EncoderLayer(nn.Module):
  config: T5Config
  deterministic: bool

  @nn.compact
  def __call__(self, x, mask, bias):
    cfg, det = self.config, self.deterministic
    dt = cfg.activation_dtype
    h = RMSNorm(cfg.layer_norm_epsilon, dt, name="pre_attention_layer_norm")(x)
    h = MultiHeadAttention(cfg.num_heads, cfg.head_dim, cfg.dropout_rate, dt, name="attention")(
      h, h, mask, bias, deterministic=det
    )
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    h = RMSNorm(cfg.layer_norm_epsilon, dt, name="pre_mlp_layer_norm")(x)
    h = MlpBlock(cfg.d_ff, cfg.mlp_activations, cfg.dropout_rate, dt, name="mlp")(
      h, deterministic=det
    )
    x = constrain(x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det), _ACT)
    return (x, None) if cfg.scan_layers else x


class DecoderLayer(nn.Module):
  config: T5Config
  deterministic: bool
  decode: bool = False

  @nn.compact
  def __call__(self, y, encoded, self_mask, cross_mask, bias):
    cfg, det = self.config, self.deterministic
    dt = cfg.activation_dtype
    h = RMSNorm(cfg.layer_norm_epsilon, dt, name="pre_self_attention_layer_norm")(y)
    h = MultiHeadAttention(
      cfg.num_heads, cfg.head_dim, cfg.dropout_rate, dt, name="self_attention"
    )(h, h, self_mask, bias, deterministic=det, decode=self.decode)
    y = y + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    h = RMSNorm(cfg.layer_norm_epsilon, dt, name="pre_cross_attention_layer_norm")(y)
    h = MultiHeadAttention(
      cfg.num_heads, cfg.head_dim, cfg.dropout_rate, dt, name="encoder_decoder_attention"
    )(h, encoded, cross_mask, None, deterministic=det)
    y = y + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    h = RMSNorm(cfg.layer_norm_epsilon, dt, name="pre_mlp_layer_norm")(y)
    h = MlpBlock(cfg.d_ff, cfg.mlp_activations, cfg.dropout_rate, dt, name="mlp")(
      h, deterministic=det
    )
    y = constrain(y + nn.Dropout(cfg.dropout_rate)(h, deterministic=det), _ACT)
    return (y, None) if cfg.scan_layers else y


def _stack(layer_cls, cfg: T5Config, num_layers: int, num_broadcast: int, **layer_kw):
  """Layers as a python loop or one nn.scan, optionally rematerialised; returns a callable."""
  policy = remat_policy(cfg.remat_policy)
  if cfg.remat_policy != "none":
    layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=not cfg.scan_layers)
  if cfg.scan_layers:
    scanned = nn.scan(
      layer_cls,
      variable_axes={"params": 0, "cache": 0},
      split_rngs={"params": True, "dropout": True},
      in_axes=(nn.broadcast,) * num_broadcast,
      length=num_layers,
      metadata_params={nn.PARTITION_NAME: "layers"},
    )
    stack = scanned(cfg, name="layers", **layer_kw)
    return lambda x, *args: stack(x, *args)[0]
  layers = [layer_cls(cfg, name=f"layers_{i}", **layer_kw) for i in range(num_layers)]

  def run(x, *args):
    for layer in layers:
      x = layer(x, *args)
    return x

  return run


class Encoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens, segment_ids=None, *, deterministic: bool):
    cfg = self.config
    x = self.shared_embedding(tokens.astype(jnp.int32)).astype(cfg.activation_dtype)
    x = constrain(nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic), _ACT)
    valid = tokens > 0
    mask = make_attention_mask(valid, valid, segment_ids, segment_ids)
    length = tokens.shape[1]
    bias = RelativePositionBias(
      cfg.relative_attention_num_buckets,
      cfg.relative_attention_max_distance,
      cfg.num_heads,
      True,
      cfg.activation_dtype,
      name="relpos_bias",
    )(length, length)
    x = _stack(EncoderLayer, cfg, cfg.num_layers, 2, deterministic=deterministic)(x, mask, bias)
    x = RMSNorm(cfg.layer_norm_epsilon, cfg.activation_dtype, name="encoder_norm")(x)
    return nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(
    self,
    encoded,
    encoder_tokens,
    decoder_input_tokens,
    decoder_target_tokens=None,
    encoder_segment_ids=None,
    decoder_segment_ids=None,
    *,
    deterministic: bool,
    decode: bool = False,
    max_decode_length: Optional[int] = None,
  ):
    cfg = self.config
    y = self.shared_embedding(decoder_input_tokens.astype(jnp.int32)).astype(cfg.activation_dtype)
    y = constrain(nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic), _ACT)
    batch, length = decoder_input_tokens.shape
    relpos = RelativePositionBias(
      cfg.relative_attention_num_buckets,
      cfg.relative_attention_max_distance,
      cfg.num_heads,
      False,
      cfg.activation_dtype,
      name="relpos_bias",
    )
    if decode:
      # Causality comes from the cache; the bias table covers the whole decode length and each
      # step takes its row.
      total = max_decode_length or length
      bias, self_mask = relpos(total, total), None
      query_valid = jnp.ones((batch, length), bool)
    else:
      bias = relpos(length, length)
      query_valid = (
        decoder_target_tokens > 0
        if decoder_target_tokens is not None
        else jnp.ones((batch, length), bool)
      )
      self_mask = make_attention_mask(
        query_valid, query_valid, decoder_segment_ids, decoder_segment_ids, causal=True
      )
    cross_mask = make_attention_mask(
      query_valid, encoder_tokens > 0, decoder_segment_ids, encoder_segment_ids
    )
    y = _stack(
      DecoderLayer, cfg, cfg.decoder_layers, 4, deterministic=deterministic, decode=decode
    )(y, encoded, self_mask, cross_mask, bias)
    y = RMSNorm(cfg.layer_norm_epsilon, cfg.activation_dtype, name="decoder_norm")(y)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    if cfg.tie_word_embeddings:
      # v1.0: logits through the shared embedding, scaled by 1/sqrt(d_model).
      embedding = self.shared_embedding.embedding
      logits = jnp.einsum(
        "bld,vd->blv",
        y.astype(jnp.float32) * cfg.d_model**-0.5,
        jnp.asarray(embedding, jnp.float32),
      )
    else:
      logits = DenseGeneral(
        (cfg.vocab_size,),
        ("embed", "vocab"),
        init=_scaled_init(1.0, "truncated_normal"),
        dtype=jnp.float32,
        name="logits_dense",
      )(y)
    return constrain(logits, ("batch", "length", "vocab"))


class Transformer(nn.Module):
  """T5 encoder-decoder. `__call__` returns float32 logits [batch, target_length, vocab]."""

  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = nn.Embed(
      cfg.vocab_size,
      cfg.d_model,
      dtype=cfg.activation_dtype,
      param_dtype=jnp.float32,
      embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
    )
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)

  def encode(
    self,
    encoder_input_tokens,
    encoder_segment_ids=None,
    encoder_positions=None,
    *,
    enable_dropout: bool = False,
  ):
    del encoder_positions
    return self.encoder(encoder_input_tokens, encoder_segment_ids, deterministic=not enable_dropout)

  def decode(
    self,
    encoded,
    encoder_input_tokens,
    decoder_input_tokens,
    decoder_target_tokens=None,
    encoder_segment_ids=None,
    decoder_segment_ids=None,
    decoder_positions=None,
    *,
    enable_dropout: bool = False,
    decode: bool = False,
    max_decode_length: Optional[int] = None,
  ):
    del decoder_positions
    return self.decoder(
      encoded,
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      encoder_segment_ids,
      decoder_segment_ids,
      deterministic=not enable_dropout,
      decode=decode,
      max_decode_length=max_decode_length,
    )

  def __call__(
    self,
    encoder_input_tokens,
    decoder_input_tokens,
    decoder_target_tokens=None,
    encoder_segment_ids=None,
    decoder_segment_ids=None,
    encoder_positions=None,
    decoder_positions=None,
    *,
    enable_dropout: bool = False,
  ):
    encoded = self.encode(
      encoder_input_tokens, encoder_segment_ids, encoder_positions, enable_dropout=enable_dropout
    )
    return self.decode(
      encoded,
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      encoder_segment_ids,
      decoder_segment_ids,
      decoder_positions,
      enable_dropout=enable_dropout,
    )

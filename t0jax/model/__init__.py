"""The T5 encoder-decoder: config, flax modules, layouts, decoding, and the model seam
(`EncoderDecoderModel`: loss, scores and generation, the only caller of the network)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from t0jax.model.config import T5Config, get_config, remat_policy
from t0jax.model.layout import scan_params, unscan_params
from t0jax.model.network import Decoder, Encoder, Transformer
from t0jax.model.models import EncoderDecoderModel, as_model


def dummy_inputs(batch: int = 1, input_length: int = 8, target_length: int = 8):
  """Shapes for `init`: encoder tokens, decoder inputs, decoder targets."""
  shape_in, shape_out = (batch, input_length), (batch, target_length)
  return (
    jnp.ones(shape_in, jnp.int32),
    jnp.ones(shape_out, jnp.int32),
    jnp.ones(shape_out, jnp.int32),
  )


def init_params(cfg: T5Config, rng, boxed: bool = False):
  """Randomly initialised parameters (plain arrays unless `boxed`: then with axis metadata)."""
  params = Transformer(cfg).init(rng, *dummy_inputs())["params"]
  return params if boxed else nn.unbox(params)


def logical_axes(cfg: T5Config):
  """The logical PartitionSpec of every parameter, from shapes alone (nothing allocated)."""
  boxed = jax.eval_shape(lambda: Transformer(cfg).init(jax.random.key(0), *dummy_inputs()))
  return nn.get_partition_spec(boxed["params"])


__all__ = [
  "T5Config",
  "get_config",
  "remat_policy",
  "Transformer",
  "Encoder",
  "Decoder",
  "scan_params",
  "unscan_params",
  "init_params",
  "logical_axes",
  "dummy_inputs",
  "EncoderDecoderModel",
  "as_model",
]

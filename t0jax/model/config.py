"""One config dataclass for the T5 encoder-decoder, and the named sizes."""
import dataclasses
from typing import Optional, Tuple

import jax
import jax.numpy as jnp

REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims", "minimal")


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Architecture and numerics of a T5 encoder-decoder (T5 v1.1 defaults).

  v1.0 checkpoints: `mlp_activations=("relu",)`, `tie_word_embeddings=True`.
  """
  vocab_size: int = 32128
  d_model: int = 512
  num_heads: int = 6
  head_dim: int = 64
  d_ff: int = 1024
  num_layers: int = 8
  num_decoder_layers: Optional[int] = None  # None: same as num_layers
  mlp_activations: Tuple[str, ...] = ("gelu", "linear")
  tie_word_embeddings: bool = False
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.0
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"  # activations; parameters are always float32
  scan_layers: bool = False
  remat_policy: str = "none"

  def __post_init__(self):
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"T5Config.remat_policy={self.remat_policy!r} is not one of {REMAT_POLICIES}.")
    for act in self.mlp_activations:
      if act not in ("gelu", "relu", "linear"):
        raise ValueError(f"T5Config.mlp_activations has unknown activation {act!r} "
                         "(use 'gelu', 'relu' or 'linear').")
    if self.dtype not in ("float32", "bfloat16", "float16"):
      raise ValueError(f"T5Config.dtype={self.dtype!r}: use 'float32' or 'bfloat16'.")

  @property
  def decoder_layers(self) -> int:
    return self.num_layers if self.num_decoder_layers is None else self.num_decoder_layers

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)

  def replace(self, **kw) -> "T5Config":
    return dataclasses.replace(self, **kw)

  def num_params(self) -> int:
    """Parameter count, from shapes alone."""
    d, h, k, f = self.d_model, self.num_heads, self.head_dim, self.d_ff
    attn = 4 * d * h * k
    mlp = (len(self.mlp_activations) + 1) * d * f
    enc = self.num_layers * (attn + mlp + 2 * d)
    dec = self.decoder_layers * (2 * attn + mlp + 3 * d)
    rel = 2 * h * self.relative_attention_num_buckets
    head = 0 if self.tie_word_embeddings else d * self.vocab_size
    return self.vocab_size * d + enc + dec + rel + 2 * d + head


# T5 v1.1 shapes (REFERENCE.md section 5). `tiny` is for CPU tests and the demo.
_SIZES = {
    "tiny": dict(d_model=128, num_heads=4, head_dim=32, d_ff=512, num_layers=2),
    "small": dict(d_model=512, num_heads=6, head_dim=64, d_ff=1024, num_layers=8),
    "base": dict(d_model=768, num_heads=12, head_dim=64, d_ff=2048, num_layers=12),
    "large": dict(d_model=1024, num_heads=16, head_dim=64, d_ff=2816, num_layers=24),
    "xl": dict(d_model=2048, num_heads=32, head_dim=64, d_ff=5120, num_layers=24),
    "xxl": dict(d_model=4096, num_heads=64, head_dim=64, d_ff=10240, num_layers=24),
}


def get_config(name: str, **overrides) -> T5Config:
  """A named T5 v1.1 size (`tiny`, `small`, `base`, `large`, `xl`, `xxl`) with overrides."""
  if name not in _SIZES:
    raise ValueError(f"Unknown model size {name!r}; choose one of {sorted(_SIZES)}.")
  return T5Config(**{**_SIZES[name], **overrides})


def remat_policy(name: str):
  """The jax.checkpoint policy for a named remat setting (None: no rematerialisation)."""
  policies = jax.checkpoint_policies
  return {
      "none": None,
      "full": policies.nothing_saveable,
      "dots": policies.checkpoint_dots,
      "dots_with_no_batch_dims": policies.checkpoint_dots_with_no_batch_dims,
      # Keep only the layer inputs' projections: the cheapest memory that avoids recomputing matmuls
      # whose outputs are small.
      "minimal": policies.dots_with_no_batch_dims_saveable,
  }[name]

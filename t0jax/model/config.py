"""One config dataclass for the T5 encoder-decoder, the named sizes, and its dict form.

The named sizes live here only: gin model files (gin/models/*.gin) say `T5Config.size = 'xl'`;
`T5Config` in gin is `configure`, which starts from that size and applies every other binding
(`T5Config.d_model = ...`, `T5Config.dropout_rate = %DROPOUT_RATE`) on top.
"""

import dataclasses
import inspect
from typing import Any, Mapping, Optional, Tuple

import gin
import jax
import jax.numpy as jnp

REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims", "minimal")

# T5 v1.1 shapes (REFERENCE.md section 5). `tiny` is for CPU tests and the demo; `small` gives the
# dataclass its defaults.
SIZES = {
  "tiny": dict(d_model=128, num_heads=4, head_dim=32, d_ff=512, num_layers=2),
  "small": dict(d_model=512, num_heads=6, head_dim=64, d_ff=1024, num_layers=8),
  "base": dict(d_model=768, num_heads=12, head_dim=64, d_ff=2048, num_layers=12),
  "large": dict(d_model=1024, num_heads=16, head_dim=64, d_ff=2816, num_layers=24),
  "xl": dict(d_model=2048, num_heads=32, head_dim=64, d_ff=5120, num_layers=24),
  "xxl": dict(d_model=4096, num_heads=64, head_dim=64, d_ff=10240, num_layers=24),
}
_SMALL = SIZES["small"]

# Settings that may change between runs of the same model: they change numerics, not shapes.
RUNTIME_FIELDS = frozenset({"dropout_rate", "dtype", "remat_policy", "scan_layers"})


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Architecture and numerics of a T5 encoder-decoder (T5 v1.1 defaults).

  v1.0 checkpoints: `mlp_activations=("relu",)`, `tie_word_embeddings=True`.
  """

  vocab_size: int = 32128
  d_model: int = _SMALL["d_model"]
  num_heads: int = _SMALL["num_heads"]
  head_dim: int = _SMALL["head_dim"]
  d_ff: int = _SMALL["d_ff"]
  num_layers: int = _SMALL["num_layers"]
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
      raise ValueError(
        f"T5Config.remat_policy={self.remat_policy!r} is not one of {REMAT_POLICIES}."
      )
    for act in self.mlp_activations:
      if act not in ("gelu", "relu", "linear"):
        raise ValueError(
          f"T5Config.mlp_activations has unknown activation {act!r} "
          "(use 'gelu', 'relu' or 'linear')."
        )
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

  def to_dict(self) -> dict:
    """JSON-ready fields (the form kept in t0jax checkpoints)."""
    d = dataclasses.asdict(self)
    d["mlp_activations"] = list(d["mlp_activations"])
    return d

  @classmethod
  def from_dict(cls, d: Mapping[str, Any], source: str = "the model config") -> "T5Config":
    """Inverse of `to_dict`; unknown fields are an error naming `source`."""
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(
        f"{source}: unknown T5Config field(s) {unknown}; it was written by another "
        "t0jax version, or is not a t0jax model config."
      )
    d = dict(d)
    if "mlp_activations" in d:
      d["mlp_activations"] = tuple(d["mlp_activations"])
    return cls(**d)

  def shape_signature(self) -> dict:
    """The fields that decide the parameters' shapes and meaning (not dropout, dtype, remat,
    scan): two configs with equal signatures can load each other's weights."""
    d = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
    d["num_decoder_layers"] = self.decoder_layers  # None means "as many as the encoder"
    return d


def shape_diff(saved, current) -> dict:
  """{field: (saved, current)} where two configs (or shape signatures) differ in shape."""
  saved, current = (
    x.shape_signature() if isinstance(x, T5Config) else dict(x) for x in (saved, current)
  )
  keys = set(saved) | set(current)
  return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}


def describe_diff(
  diff: Mapping[str, tuple], saved: str = "checkpoint", current: str = "now"
) -> str:
  """`shape_diff` in words, for error messages."""
  return "; ".join(f"{k}: {saved} {a!r}, {current} {b!r}" for k, (a, b) in diff.items())


def get_config(name: str, **overrides) -> T5Config:
  """A named T5 v1.1 size (`tiny`, `small`, `base`, `large`, `xl`, `xxl`) with overrides."""
  if name not in SIZES:
    raise ValueError(f"Unknown model size {name!r}; choose one of {sorted(SIZES)}.")
  return T5Config(**{**SIZES[name], **overrides})


def configure(*, size: Optional[str] = None, **fields) -> T5Config:
  """`T5Config` in gin: a named size (default: the dataclass's defaults), bound fields on top."""
  return get_config(size, **fields) if size is not None else T5Config(**fields)


# gin checks binding names against the signature: list every field, so `T5Config.d_modle` fails
# when the file is parsed, with the closest names.
configure.__signature__ = inspect.Signature(
  [inspect.Parameter("size", inspect.Parameter.KEYWORD_ONLY, default=None)]
  + [
    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
    for f in dataclasses.fields(T5Config)
  ]
)
# Experiments configure the model as T5X users expect: `T5Config.d_model = 2048`.
gin.external_configurable(configure, name="T5Config", module="t0jax.model")


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

"""FLOP counts of T5 training steps and peak throughput per device kind (for MFU and planning)."""

from typing import Optional

from t0jax.model.config import T5Config

# Dense bf16 peak FLOP/s per JAX device, from vendors' specifications. A JAX device is a
# TensorCore on TPU v2/v3 (vendors quote those per chip = 2 cores) and a chip from v4 on.
PEAK_FLOPS = {
  "TPU v2": 45e12 / 2,
  "TPU v3": 123e12 / 2,
  "TPU v4": 275e12,
  "TPU v5 lite": 197e12,
  "TPU v5e": 197e12,
  "TPU v5p": 459e12,
  "TPU v6 lite": 918e12,
  "TPU v6e": 918e12,
  "NVIDIA A100": 312e12,
  "NVIDIA H100": 989e12,
  "NVIDIA H200": 989e12,
  "NVIDIA B200": 2250e12,
  "NVIDIA L4": 121e12,
  "NVIDIA A10G": 70e12,
}


def peak_flops(device_kind: str) -> Optional[float]:
  """Peak bf16 FLOP/s of a device kind as JAX names it (`jax.devices()[0].device_kind`)."""
  for name, value in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
    if device_kind.lower().startswith(name.lower()) or name.lower() in device_kind.lower():
      return value
  return None


def forward_flops_per_sequence(cfg: T5Config, input_len: int, target_len: int) -> float:
  """Matmul FLOPs of one forward pass over one (input, target) pair at these padded lengths."""
  d, inner, f = cfg.d_model, cfg.num_heads * cfg.head_dim, cfg.d_ff
  n_wi = len(cfg.mlp_activations)
  mlp = 2 * (n_wi + 1) * d * f
  proj = 2 * 4 * d * inner
  attn = lambda q, k: 2 * 2 * q * k * inner  # scores and weighted sum
  enc = cfg.num_layers * (input_len * (proj + mlp) + attn(input_len, input_len))
  dec_self = target_len * proj + attn(target_len, target_len)
  dec_cross = (
    target_len * 2 * 2 * d * inner + input_len * 2 * 2 * d * inner + attn(target_len, input_len)
  )
  dec = cfg.decoder_layers * (dec_self + dec_cross + target_len * mlp)
  logits = 2 * target_len * d * cfg.vocab_size
  return float(enc + dec + logits)


def train_flops_per_step(
  cfg: T5Config, batch: int, input_len: int, target_len: int, remat_policy: Optional[str] = None
) -> float:
  """Forward + backward (2x forward) FLOPs; full rematerialisation adds one more forward."""
  fwd = batch * forward_flops_per_sequence(cfg, input_len, target_len)
  remat = remat_policy if remat_policy is not None else cfg.remat_policy
  extra = {"none": 0.0, "full": 1.0}.get(remat, 0.5)
  return fwd * (3.0 + extra)

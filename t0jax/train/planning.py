"""Capacity planning: per-device memory, FLOPs and step time of a training run on a topology.

Everything is computed from shapes: the model's parameter tree and logical axes, the trainer's
axis rules and optimizer (via `jax.eval_shape`, so an 11B model costs nothing), and an activation
model per remat policy. No device is touched. `t0jax plan` (t0jax/cli/plan.py) prints the result.

Topology names follow Cloud TPU's accelerator types: the number in `v2-*`, `v3-*`, `v4-*` and
`v5p-*` counts TensorCores (2 per chip); in `v5e-*` (`v5litepod-*`) and `v6e-*` it counts chips.
A JAX device is one TensorCore on v2/v3 and one chip on v4 and later (v4/v5p chips run their two
cores as one "megacore" device). GPUs are written `NxMODEL`, e.g. `8xA100-40GB`, `16xH100`.
"""

import dataclasses
import functools
import math
import re
from typing import Callable, Dict, List, Optional

from t0jax.train import flops
from t0jax.model.config import REMAT_POLICIES, T5Config

GiB = 2**30


class PlanError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str
  kind: str  # "tpu" or "gpu"
  num_devices: int
  hbm_bytes: float  # per device
  peak_flops: float  # per device, dense bf16
  devices_per_host: int

  @property
  def num_hosts(self) -> int:
    return max(1, self.num_devices // self.devices_per_host)


# generation -> (what the name counts, devices per counted unit, HBM per device, bf16 peak per
# device, devices per host). Vendor figures; a v2/v3 device is a core, hence half a chip's peak.
_TPUS = {
  "v2": ("cores", 1.0, 8 * GiB, 45e12 / 2, 8),
  "v3": ("cores", 1.0, 16 * GiB, 123e12 / 2, 8),
  "v4": ("cores", 0.5, 32 * GiB, flops.PEAK_FLOPS["TPU v4"], 4),
  "v5p": ("cores", 0.5, 95 * GiB, flops.PEAK_FLOPS["TPU v5p"], 4),
  "v5e": ("chips", 1.0, 16 * GiB, flops.PEAK_FLOPS["TPU v5e"], 4),
  "v6e": ("chips", 1.0, 32 * GiB, flops.PEAK_FLOPS["TPU v6e"], 4),
}
# GPU model -> (HBM per GPU, bf16 dense peak). 8 GPUs per host.
_GPUS = {
  "A100-40GB": (40 * GiB, flops.PEAK_FLOPS["NVIDIA A100"]),
  "A100-80GB": (80 * GiB, flops.PEAK_FLOPS["NVIDIA A100"]),
  "H100": (80 * GiB, flops.PEAK_FLOPS["NVIDIA H100"]),
  "H200": (141e9, flops.PEAK_FLOPS["NVIDIA H200"]),
  "B200": (180e9, flops.PEAK_FLOPS["NVIDIA B200"]),
  "L4": (24e9, flops.PEAK_FLOPS["NVIDIA L4"]),
  "A10G": (24e9, flops.PEAK_FLOPS["NVIDIA A10G"]),
}
_GPU_ALIASES = {"H100-80GB": "H100", "H200-141GB": "H200"}
EXAMPLES = "v3-512, v4-128, v5p-256, v5e-64, v6e-256, 8xA100-40GB, 8xH100, 16xH100, 8xH200"


def parse_topology(name: str) -> Topology:
  """`v3-512`, `v4-128`, `v5litepod-16`, `8xH100`, ... -> Topology."""
  text = name.strip()
  m = re.fullmatch(r"(v2|v3|v4|v5p|v5e|v5litepod|v6e)-(\d+)", text, flags=re.I)
  if m:
    gen = m.group(1).lower().replace("v5litepod", "v5e")
    count = int(m.group(2))
    unit, per_unit, hbm, peak, per_host = _TPUS[gen]
    if unit == "cores" and (count < 8 or count % 8):
      raise PlanError(
        f"--topology {name}: {gen} slices are named by TensorCores, a multiple of "
        f"8 (e.g. {gen}-8, {gen}-32, {gen}-512)."
      )
    devices = int(count * per_unit)
    if unit == "chips" and devices <= 8:
      per_host = devices  # v5e/v6e slices of up to 8 chips are one host
    return Topology(text, "tpu", devices, hbm, peak, per_host)
  m = re.fullmatch(r"(\d+)\s*x\s*([A-Za-z0-9-]+)", text)
  if m:
    model = m.group(2).upper()
    model = _GPU_ALIASES.get(model, model)
    if model == "A100":
      raise PlanError(
        f"--topology {name}: say which A100: {m.group(1)}xA100-40GB or {m.group(1)}xA100-80GB."
      )
    if model not in _GPUS:
      raise PlanError(f"--topology {name}: unknown GPU {m.group(2)!r}; known: {', '.join(_GPUS)}.")
    count = int(m.group(1))
    if count < 1:
      raise PlanError(f"--topology {name}: the GPU count must be at least 1.")
    hbm, peak = _GPUS[model]
    return Topology(text, "gpu", count, hbm, peak, min(count, 8))
  raise PlanError(f"--topology {name!r} is not a known topology; examples: {EXAMPLES}.")


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """What the trainer would run: the `train(...)` arguments that decide memory and time."""

  cfg: T5Config
  batch_size: int
  input_length: int
  target_length: int
  num_partitions: int = 1
  axis_rules: object = "standard"
  num_microbatches: int = 1
  optimizer: Optional[Callable] = None  # optimizer(learning_rate=...) -> optax transform
  train_steps: int = 0


@dataclasses.dataclass
class Plan:
  topology: Topology
  settings: RunSettings
  data_parallel: int
  rows_per_device: int  # sequences per device per (micro)batch
  memory: Dict[str, float]  # bytes per device, by part; "total" included
  usable_bytes: float
  model_flops: float  # per step, without rematerialisation
  hardware_flops: float  # per step, with it
  mfu: float
  step_seconds: float
  remat_policy: str

  @property
  def fits(self) -> bool:
    return self.memory["total"] <= self.usable_bytes

  @property
  def run_hours(self) -> float:
    return self.step_seconds * self.settings.train_steps / 3600


def _mesh_axes_bytes(shapes, logical_specs, rules, mesh_shape: Dict[str, int]) -> float:
  """Bytes per device of a tree laid out by logical axis names on a ('data', 'model') mesh."""
  import flax.linen as nn
  import jax

  mesh_specs = nn.logical_to_mesh(logical_specs, rules)
  total = 0.0
  for shape, spec in zip(
    jax.tree.leaves(shapes),
    jax.tree.leaves(mesh_specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)),
  ):
    total += _shard_elems(shape.shape, spec, mesh_shape) * shape.dtype.itemsize
  return total


def _shard_elems(shape, spec, mesh_shape: Dict[str, int]) -> int:
  axes = tuple(spec) + (None,) * (len(shape) - len(tuple(spec)))
  n = 1
  for dim, axis in zip(shape, axes):
    names = () if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    n *= math.ceil(dim / math.prod(mesh_shape[a] for a in names))
  return n


def state_bytes(s: RunSettings, mesh_shape: Dict[str, int]) -> Dict[str, float]:
  """Parameters and optimizer state per device, laid out as the trainer lays them out."""
  rules = s.axis_rules if isinstance(s.axis_rules, str) else tuple(map(tuple, s.axis_rules))
  params, opt = _state_bytes(s.cfg, rules, s.optimizer, mesh_shape["data"], mesh_shape["model"])
  return {"params": params, "optimizer": opt}


@functools.lru_cache(maxsize=256)
def _state_bytes(cfg: T5Config, axis_rules, optimizer, data: int, model: int):
  import flax.linen as nn
  import jax
  from jax.sharding import AbstractMesh, AxisType
  from t0jax.train import optim
  from t0jax.parallel.partitioning import get_rules

  rules = get_rules(axis_rules)
  param_shapes, specs, opt_shapes = _shapes(cfg, optimizer)
  mesh_shape = {"data": data, "model": model}
  params = _mesh_axes_bytes(param_shapes, specs, rules, mesh_shape)
  mesh = AbstractMesh((data, model), ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))
  param_sh = nn.logical_to_mesh_sharding(specs, mesh, rules)
  opt_sh = optim.state_shardings(opt_shapes, param_shapes, param_sh)
  opt = sum(
    _shard_elems(x.shape, sh.spec, mesh_shape) * x.dtype.itemsize
    for x, sh in zip(jax.tree.leaves(opt_shapes), jax.tree.leaves(opt_sh))
  )
  return float(params), float(opt)


@functools.lru_cache(maxsize=16)
def _shapes(cfg: T5Config, optimizer):
  """Parameter shapes, their logical axes and the optimizer state's shapes (nothing allocated)."""
  import jax
  from t0jax.train import optim
  from t0jax.model import init_params, logical_axes

  param_shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  tx = (optimizer or optim.adafactor)(learning_rate=optim.constant_schedule(1e-3))
  return param_shapes, logical_axes(cfg), jax.eval_shape(tx.init, param_shapes)


def activation_bytes(
  cfg: T5Config,
  rows: int,
  input_length: int,
  target_length: int,
  num_partitions: int = 1,
  remat_policy: Optional[str] = None,
) -> Dict[str, float]:
  """What the forward pass keeps for the backward pass, per device, by part.

  Per token and layer, in elements (d = d_model, H = heads x head_dim, F = d_ff, n = number of
  `wi` matrices, heads and d_ff terms divided by num_partitions, L = the attended length):
    encoder, none:    4d + 4H + 2heads*L + (n+2)F (layer input, both norms, q k v, attention
                                                   logits and probabilities, context, MLP
                                                   pre-activations, activation and product)
    encoder, dots:    3d + 4H + heads*L + nF      (every matmul output + the layer input)
    encoder, minimal: 3d + 3H + nF                (matmuls without batch dims: projections, MLP)
    encoder, full:    d                           (the layer input only)
  The decoder adds the self-attention's and the cross-attention's share (their k and v per
  input token). Besides the layers: the embeddings and final norms (4d per input token, 3d per
  target token, in float32), the packing masks (1 byte per attention pair), the relative
  position biases, and the float32 logits with their gradient. With remat, backward recomputes
  one layer at a time: that layer's full activations are added once.

  The remat policies match what JAX saves (`jax.ad_checkpoint.print_saved_residuals`) to within
  10% on the tiny model; 'none' assumes XLA fuses elementwise chains (JAX's own list is longer).
  """
  remat = cfg.remat_policy if remat_policy is None else remat_policy
  if remat not in REMAT_POLICIES:
    raise PlanError(f"remat policy {remat!r} is not one of {', '.join(REMAT_POLICIES)}.")
  remat = "minimal" if remat == "dots_with_no_batch_dims" else remat
  a = {"float32": 4, "bfloat16": 2, "float16": 2}[cfg.dtype]
  d, F = cfg.d_model, cfg.d_ff / num_partitions
  heads = cfg.num_heads / num_partitions
  H = heads * cfg.head_dim
  n = len(cfg.mlp_activations)
  Li, Lt = input_length, target_length
  enc_tokens, dec_tokens = rows * Li, rows * Lt

  def enc_layer(policy):
    return {
      "none": 4 * d + 4 * H + 2 * heads * Li + (n + 2) * F,
      "dots": 3 * d + 4 * H + heads * Li + n * F,
      "minimal": 3 * d + 3 * H + n * F,
      "full": d,
    }[policy] * enc_tokens

  def dec_layer(policy):
    per_target = {
      "none": 6 * d + 6 * H + 2 * heads * (Lt + Li) + (n + 2) * F,
      "dots": 4 * d + 6 * H + heads * (Lt + Li) + n * F,
      "minimal": 4 * d + 4 * H + n * F,
      "full": d,
    }[policy]
    cross_kv = 0 if policy == "full" else 2 * H  # per input token
    return per_target * dec_tokens + cross_kv * enc_tokens

  out = {
    "encoder_layers": cfg.num_layers * enc_layer(remat) * a,
    "decoder_layers": cfg.decoder_layers * dec_layer(remat) * a,
    # float32: the embedding lookup and the final norms run before the cast to `dtype`.
    "embeddings_and_norms": (4 * d * enc_tokens + 3 * d * dec_tokens) * 4,
    "masks_and_position_bias": rows * (Li * Li + Lt * Li + Lt * Lt)
    + heads * (Li * Li + Lt * Lt) * a,
    "logits": 2 * dec_tokens * cfg.vocab_size / num_partitions * 4,
    "recomputed_layer": 0.0 if remat == "none" else max(enc_layer("none"), dec_layer("none")) * a,
  }
  return out


def plan(
  s: RunSettings,
  topology: Topology,
  mfu: float = 0.35,
  margin: float = 0.1,
  remat_policy: Optional[str] = None,
) -> Plan:
  """Memory per device, FLOPs per step and step time of `s` on `topology`."""
  if not 0 < mfu <= 1:
    raise PlanError(f"--mfu {mfu}: give a fraction of peak in (0, 1], e.g. 0.35.")
  if not 0 <= margin < 1:
    raise PlanError(f"--margin {margin}: give a fraction of memory in [0, 1), e.g. 0.1.")
  n, p = topology.num_devices, s.num_partitions
  if p < 1 or n % p:
    raise PlanError(f"NUM_PARTITIONS={p} must divide the {n} devices of {topology.name}.")
  dp = n // p
  per_step = dp * s.num_microbatches
  if s.batch_size % per_step:
    raise PlanError(
      f"BATCH_SIZE={s.batch_size} must be divisible by data-parallel size {dp} x "
      f"NUM_MICROBATCHES {s.num_microbatches} on {topology.name} (devices "
      f"{n} / NUM_PARTITIONS {p})."
    )
  rows = s.batch_size // per_step
  remat = s.cfg.remat_policy if remat_policy is None else remat_policy
  mem = dict(state_bytes(s, {"data": dp, "model": p}))
  # float32 gradients laid out like the parameters; accumulation keeps a second buffer.
  mem["gradients"] = mem["params"] * (2 if s.num_microbatches > 1 else 1)
  acts = activation_bytes(s.cfg, rows, s.input_length, s.target_length, p, remat)
  mem["activations"] = sum(acts.values())
  mem["batch"] = rows * s.num_microbatches * (3 * s.input_length + 5 * s.target_length) * 4
  mem["total"] = sum(mem.values())
  model = flops.train_flops_per_step(
    s.cfg, s.batch_size, s.input_length, s.target_length, remat_policy="none"
  )
  hardware = flops.train_flops_per_step(
    s.cfg, s.batch_size, s.input_length, s.target_length, remat_policy=remat
  )
  # `mfu` is the share of peak the executed FLOPs reach: recomputation costs time.
  seconds = hardware / (n * topology.peak_flops * mfu)
  return Plan(
    topology,
    s,
    dp,
    rows,
    mem,
    topology.hbm_bytes * (1 - margin),
    model,
    hardware,
    mfu,
    seconds,
    remat,
  )


def alternatives(
  s: RunSettings,
  topology: Topology,
  mfu: float,
  margin: float,
  remat_policy: Optional[str] = None,
  limit: int = 4,
) -> List[Plan]:
  """Settings that fit when `s` does not, fastest first: model parallelism (powers of two up to
  the number of heads), FSDP, more rematerialisation, gradient accumulation (the fewest
  microbatches that fit for each combination). Step times count FLOPs only."""
  base = s.cfg.remat_policy if remat_policy is None else remat_policy
  n = topology.num_devices
  parts = [p for p in (2**i for i in range(12)) if p <= min(n, s.cfg.num_heads) and n % p == 0]
  found = []
  for p in parts:
    for rules in dict.fromkeys([s.axis_rules, "fsdp"]):
      for remat in dict.fromkeys([base, "minimal", "full"]):
        micro = s.num_microbatches
        while s.batch_size % ((n // p) * micro) == 0:
          trial = plan(
            dataclasses.replace(s, num_partitions=p, axis_rules=rules, num_microbatches=micro),
            topology,
            mfu,
            margin,
            remat,
          )
          if trial.fits:
            found.append(trial)
            break
          micro *= 2
  # Communication is not modelled; among equally fast settings prefer a model axis inside one
  # host (fast interconnect), then fewer microbatches, then less model parallelism.
  found.sort(
    key=lambda t: (
      round(t.step_seconds, 6),
      t.settings.num_partitions > topology.devices_per_host,
      t.settings.num_microbatches,
      t.settings.num_partitions,
    )
  )
  return found[:limit]

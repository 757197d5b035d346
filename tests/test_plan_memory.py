"""The capacity planner's numbers: topologies as Cloud TPU and GPU users name them, memory of a
small config computed by hand, and memory the tiny model really takes on CPU (XLA's buffer
sizes of the compiled train step; JAX's saved residuals per remat policy)."""

import contextlib
import io
import re

import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest

from t0jax.train import flops, optim
from t0jax.model import T5Config, Transformer, get_config, init_params, logical_axes
from t0jax.model.losses import cross_entropy_with_z_loss
from t0jax.parallel.partitioning import Partitioner
from t0jax.train.planning import (
  GiB,
  PlanError,
  RunSettings,
  activation_bytes,
  parse_topology,
  plan,
  state_bytes,
)
from t0jax.train.state import TrainState
from t0jax.train.trainer import make_train_step


@pytest.mark.parametrize(
  "name, devices, hosts, hbm_gib, peak",
  [
    ("v3-512", 512, 64, 16, 61.5e12),  # v3: the name counts cores; a JAX device is a core
    ("v2-32", 32, 4, 8, 22.5e12),
    ("v4-128", 64, 16, 32, 275e12),  # v4: the name counts cores; a device is a chip (2 cores)
    ("v5p-256", 128, 32, 95, 459e12),
    ("v5e-16", 16, 4, 16, 197e12),  # v5e/v6e: the name counts chips
    ("v5litepod-8", 8, 1, 16, 197e12),
    ("v6e-256", 256, 64, 32, 918e12),
    ("8xA100-40GB", 8, 1, 40, 312e12),
    ("8xA100-80GB", 8, 1, 80, 312e12),
    ("16xH100", 16, 2, 80, 989e12),
  ],
)
def test_topology_names_give_devices_hosts_memory_and_peak(name, devices, hosts, hbm_gib, peak):
  t = parse_topology(name)
  assert (t.num_devices, t.num_hosts, t.hbm_bytes, t.peak_flops) == (
    devices,
    hosts,
    hbm_gib * GiB,
    peak,
  )


def test_h200_has_141_gb():
  assert parse_topology("8xH200").hbm_bytes == 141e9


@pytest.mark.parametrize(
  "name, message",
  [
    ("v3-12", r"named by TensorCores, a multiple of 8"),
    ("v9-8", r"not a known topology; examples: v3-512"),
    ("8xA100", r"say which A100: 8xA100-40GB or 8xA100-80GB"),
    ("4xRTX9090", r"unknown GPU 'RTX9090'"),
  ],
)
def test_unknown_or_malformed_topologies_are_explained(name, message):
  with pytest.raises(PlanError, match=message):
    parse_topology(name)


# d_model 16, 4 heads of 4, d_ff 32, one layer per stack, vocab 128: small enough to add by hand.
SMALL = T5Config(
  vocab_size=128,
  d_model=16,
  num_heads=4,
  head_dim=4,
  d_ff=32,
  num_layers=1,
  num_decoder_layers=1,
  dtype="bfloat16",
)


def test_parameter_bytes_per_device_of_a_small_config_by_hand():
  # NUM_PARTITIONS=2, standard rules: vocab, heads and mlp are split in 2; embed is whole.
  embedding = 64 * 16  # [vocab/2, embed]
  relpos = 2 * 32  # [heads/2, buckets], one table per stack
  attention = 3 * 16 * 2 * 4 + 2 * 4 * 16  # q, k, v [embed, heads/2, kv] + out [heads/2, kv, embed]
  mlp = 2 * 16 * 16 + 16 * 16  # wi_0, wi_1 [embed, mlp/2] + wo [mlp/2, embed]
  encoder = relpos + 2 * 16 + attention + mlp + 16  # two norms, final norm
  decoder = relpos + 3 * 16 + 2 * attention + mlp + 16 + 16 * 64  # + logits_dense [embed, vocab/2]
  s = RunSettings(SMALL, batch_size=8, input_length=8, target_length=4, num_partitions=2)
  got = state_bytes(s, {"data": 4, "model": 2})
  assert got["params"] == 4 * (embedding + encoder + decoder)
  # FSDP also splits embed over data (4): the embedding becomes [vocab/2, embed/4].
  fsdp = state_bytes(RunSettings(SMALL, 8, 8, 4, 2, "fsdp"), {"data": 4, "model": 2})
  assert fsdp["params"] < got["params"] / 3


def test_unfactored_optimizer_state_mirrors_the_parameters_plus_placeholders():
  # No dimension reaches Adafactor's min_dim_size_to_factor (128): every second moment is a full
  # tensor laid out like its parameter; the unused factored slots are 1-element placeholders.
  s = RunSettings(SMALL, 8, 8, 4, 2)
  got = state_bytes(s, {"data": 4, "model": 2})
  leaves = len(jax.tree.leaves(jax.eval_shape(lambda: init_params(SMALL, jax.random.key(0)))))
  counters = got["optimizer"] - got["params"] - 2 * 4 * leaves  # v_row, v_col placeholders
  assert 0 < counters <= 16  # and the transformations' int32 step counts


def test_activation_bytes_of_a_small_config_by_hand_with_full_remat():
  # 2 rows, inputs 8, targets 4, NUM_PARTITIONS=2, bfloat16 (2 bytes): 16 input and 8 target
  # tokens per device; H = 2 heads x 4 = 8, F = 16.
  got = activation_bytes(
    SMALL, rows=2, input_length=8, target_length=4, num_partitions=2, remat_policy="full"
  )
  assert got["encoder_layers"] == 16 * 16 * 2  # d per input token
  assert got["decoder_layers"] == 16 * 8 * 2  # d per target token
  assert got["embeddings_and_norms"] == (4 * 16 * 16 + 3 * 16 * 8) * 4
  assert got["masks_and_position_bias"] == 2 * (64 + 32 + 16) + 2 * (64 + 16) * 2
  assert got["logits"] == 2 * 8 * 64 * 4  # logits + gradient, vocab/2, float32
  encoder_layer_none = (4 * 16 + 4 * 8 + 2 * 2 * 8 + 4 * 16) * 16  # per token x 16 tokens
  assert got["recomputed_layer"] == encoder_layer_none * 2


def test_step_time_memory_total_and_fit_by_hand():
  s = RunSettings(
    SMALL,
    batch_size=64,
    input_length=8,
    target_length=4,
    num_partitions=2,
    num_microbatches=2,
    train_steps=100,
  )
  p = plan(s, parse_topology("8xL4"), mfu=0.5, margin=0.25, remat_policy="minimal")
  assert p.data_parallel == 4 and p.rows_per_device == 8
  m = p.memory
  assert m["gradients"] == 2 * m["params"]  # accumulation keeps a second float32 buffer
  assert m["batch"] == 16 * (3 * 8 + 5 * 4) * 4
  assert m["total"] == pytest.approx(sum(v for k, v in m.items() if k != "total"))
  hardware = flops.train_flops_per_step(SMALL, 64, 8, 4, remat_policy="minimal")
  assert p.step_seconds == pytest.approx(hardware / (8 * 121e12 * 0.5))
  assert p.run_hours == pytest.approx(p.step_seconds * 100 / 3600)
  assert p.usable_bytes == 24e9 * 0.75 and p.fits


def test_a_run_that_needs_more_than_the_usable_memory_does_not_fit():
  s = RunSettings(SMALL, batch_size=2**16, input_length=1024, target_length=256)
  p = plan(s, parse_topology("8xA100-40GB"), remat_policy="minimal")
  assert not p.fits and p.memory["total"] > p.usable_bytes


@pytest.mark.parametrize(
  "settings, message",
  [
    (dict(num_partitions=3), r"NUM_PARTITIONS=3 must divide the 8 devices of 8xL4"),
    (dict(batch_size=12), r"BATCH_SIZE=12 must be divisible by data-parallel size 8"),
  ],
)
def test_layouts_the_trainer_would_refuse_are_refused(settings, message):
  s = RunSettings(**{**dict(cfg=SMALL, batch_size=16, input_length=8, target_length=4), **settings})
  with pytest.raises(PlanError, match=message):
    plan(s, parse_topology("8xL4"))


# ---- against memory measured on CPU for the tiny model ----

TINY = get_config("tiny", vocab_size=896)
FEATURES_IN = ("encoder_input_tokens", "encoder_segment_ids", "encoder_positions")
FEATURES_OUT = (
  "decoder_input_tokens",
  "decoder_target_tokens",
  "decoder_loss_weights",
  "decoder_segment_ids",
  "decoder_positions",
)


def _compiled_train_step(cfg, part, rows, li, lt):
  tx = optim.adafactor(learning_rate=optim.constant_schedule())
  params = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  opt = jax.eval_shape(tx.init, params)
  param_sh = part.shardings(logical_axes(cfg))
  state_sh = TrainState(part.replicated, param_sh, optim.state_shardings(opt, params, param_sh))
  state = TrainState(jax.ShapeDtypeStruct((), jnp.int32), params, opt)
  batch = {k: jax.ShapeDtypeStruct((rows, li), jnp.int32) for k in FEATURES_IN}
  batch.update({k: jax.ShapeDtypeStruct((rows, lt), jnp.int32) for k in FEATURES_OUT})
  step = make_train_step(cfg, tx, optim.constant_schedule(), 1, 1e-4, "NUM_REAL_TARGET_TOKENS", 0)
  with part.activate():
    return (
      jax.jit(
        step,
        in_shardings=(state_sh, part.batch_sharding),
        out_shardings=(state_sh, part.replicated),
        donate_argnums=0,
      )
      .lower(state, batch)
      .compile()
    )


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
def test_state_and_batch_bytes_equal_the_compiled_train_steps_per_device_inputs():
  num_partitions, rules = 2, "fsdp"  # parameters split over both mesh axes
  part = Partitioner(num_partitions, rules)
  compiled = _compiled_train_step(TINY, part, 16, 32, 8)
  measured = compiled.memory_analysis().argument_size_in_bytes
  s = RunSettings(TINY, 16, 32, 8, num_partitions, rules)
  p = plan(s, parse_topology("8xL4"))
  planned = p.memory["params"] + p.memory["optimizer"] + p.memory["batch"]
  assert planned == pytest.approx(measured, rel=0.01)


def _saved_residual_bytes(cfg, rows, li, lt):
  """What JAX keeps for the backward pass of the model's loss (its printed residual list)."""
  params = init_params(cfg, jax.random.key(0))
  enc, dec = jnp.ones((rows, li), jnp.int32), jnp.ones((rows, lt), jnp.int32)

  def loss(p):
    logits = Transformer(cfg).apply(
      {"params": p}, enc, dec, dec, jnp.ones_like(enc), jnp.ones_like(dec)
    )
    return cross_entropy_with_z_loss(logits, dec, jnp.ones(dec.shape, jnp.float32))[0].sum()

  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    jax.ad_checkpoint.print_saved_residuals(loss, params)
  size = {"f32": 4, "bf16": 2, "i32": 4, "bool": 1}
  total = 0
  for line in out.getvalue().splitlines():
    if "from the argument" in line:  # the parameters themselves
      continue
    dtype, dims = re.match(r"(\w+)\[([\d,]*)\]", line).groups()
    total += size[dtype] * int(np.prod([int(x) for x in dims.split(",") if x]))
  return total


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("remat", ["dots", "minimal", "full"])
def test_activations_match_what_jax_saves_for_the_backward_pass(remat, dtype):
  cfg = TINY.replace(remat_policy=remat, dtype=dtype)
  planned = activation_bytes(cfg, 8, 128, 32)
  measured = _saved_residual_bytes(cfg, 8, 128, 32)
  kept = sum(v for k, v in planned.items() if k != "recomputed_layer")
  assert kept == pytest.approx(measured, rel=0.15)


def test_more_remat_keeps_less_and_none_is_bounded_by_xla_and_jax():
  by_policy = {
    r: sum(activation_bytes(TINY, 8, 128, 32, remat_policy=r).values())
    for r in ("none", "dots", "minimal", "full")
  }
  assert by_policy["none"] > by_policy["dots"] > by_policy["minimal"] > by_policy["full"]
  # Without remat: JAX's residual list (elementwise chains unfused) is an upper bound; XLA's
  # buffers for the whole compiled step (gradients and temporaries included) are close.
  none = activation_bytes(TINY, 8, 128, 32, remat_policy="none")
  assert sum(none.values()) < _saved_residual_bytes(TINY, 8, 128, 32)
  compiled = _compiled_train_step(TINY, Partitioner(1, devices=jax.devices()[:1]), 8, 128, 32)
  params = state_bytes(RunSettings(TINY, 8, 128, 32), {"data": 1, "model": 1})["params"]
  planned = sum(none.values()) + params  # + gradients
  assert planned == pytest.approx(compiled.memory_analysis().temp_size_in_bytes, rel=0.25)

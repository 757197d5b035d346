"""The T5 network's own guarantees: packing isolation, cached decoding, scan/remat equivalence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t0jax.model.losses import cross_entropy_with_z_loss, shift_right
from t0jax.model import (
  T5Config,
  Transformer,
  get_config,
  init_params,
  logical_axes,
  scan_params,
  unscan_params,
)
from t0jax.model import EncoderDecoderModel
from t0jax.model.decoding import greedy_decode

CFG = T5Config(
  vocab_size=97,
  d_model=32,
  num_heads=2,
  head_dim=8,
  d_ff=48,
  num_layers=2,
  num_decoder_layers=3,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=12,
)


@pytest.fixture(scope="module")
def params():
  return init_params(CFG, jax.random.key(0))


def _loss_sum(model, params, batch):
  logits = model.apply(
    {"params": params},
    batch["encoder_input_tokens"],
    batch["decoder_input_tokens"],
    batch["decoder_target_tokens"],
    batch.get("encoder_segment_ids"),
    batch.get("decoder_segment_ids"),
  )
  loss, _ = cross_entropy_with_z_loss(
    logits, batch["decoder_target_tokens"], batch["decoder_target_tokens"] > 0
  )
  return loss.sum()


def test_packed_batch_loss_equals_sum_of_examples_run_alone(params):
  rng = np.random.default_rng(1)
  examples = [
    (rng.integers(2, 97, n_in), rng.integers(2, 97, n_out))
    for n_in, n_out in [(7, 4), (11, 6), (5, 3)]
  ]
  model = Transformer(CFG)
  alone = 0.0
  for inp, tgt in examples:
    batch = {
      "encoder_input_tokens": inp[None],
      "decoder_target_tokens": tgt[None],
      "decoder_input_tokens": np.asarray(shift_right(tgt[None])),
    }
    alone += float(_loss_sum(model, params, batch))
  # Pack all three into one row (plus trailing padding), as a packing feature converter does.
  enc = np.zeros((1, 30), np.int32)
  enc_seg = np.zeros((1, 30), np.int32)
  tgt = np.zeros((1, 16), np.int32)
  dec_seg = np.zeros((1, 16), np.int32)
  i = j = 0
  for s, (inp, t) in enumerate(examples, start=1):
    enc[0, i : i + len(inp)], enc_seg[0, i : i + len(inp)] = inp, s
    tgt[0, j : j + len(t)], dec_seg[0, j : j + len(t)] = t, s
    i, j = i + len(inp), j + len(t)
  batch = {
    "encoder_input_tokens": enc,
    "decoder_target_tokens": tgt,
    "encoder_segment_ids": enc_seg,
    "decoder_segment_ids": dec_seg,
    "decoder_input_tokens": np.asarray(shift_right(tgt, segment_ids=dec_seg)),
  }
  packed = float(_loss_sum(model, params, batch))
  np.testing.assert_allclose(packed, alone, rtol=1e-5)


def test_cached_decoding_equals_full_forward_pass(params):
  model = Transformer(CFG)
  rng = np.random.default_rng(2)
  enc = rng.integers(2, 97, (2, 9)).astype(np.int32)
  enc[1, 6:] = 0
  targets = rng.integers(2, 97, (2, 7)).astype(np.int32)
  dec_in = np.asarray(shift_right(targets))
  full = model.apply({"params": params}, enc, dec_in, targets)
  seam = EncoderDecoderModel(model)
  encoded = seam.encode(params, enc)
  cache = seam.init_cache(params, encoded, enc, 7)
  for t in range(7):
    step_logits, cache = seam.decode_step(params, cache, encoded, enc, dec_in[:, t : t + 1], 7)
    np.testing.assert_allclose(step_logits, full[:, t], atol=1e-5)


def test_greedy_decode_matches_argmax_of_full_forward_passes(params):
  model = Transformer(CFG)
  enc = np.random.default_rng(3).integers(2, 97, (3, 10)).astype(np.int32)
  out = np.asarray(
    greedy_decode(EncoderDecoderModel(model), params, enc, max_decode_length=6, eos_id=1)
  )
  # Reference: re-run the full decoder on the growing prefix, no cache.
  prefix = np.zeros((3, 1), np.int32)
  for t in range(6):
    logits = model.apply({"params": params}, enc, prefix)
    prefix = np.concatenate([prefix, np.argmax(logits[:, -1], -1)[:, None]], axis=1)
  ref = prefix[:, 1:]
  for row, ref_row in zip(out, ref):
    eos = np.where(ref_row == 1)[0]
    n = eos[0] + 1 if len(eos) else 6
    np.testing.assert_array_equal(row[:n], ref_row[:n])
    assert (row[n:] == 0).all()


@pytest.mark.parametrize("policy", ["none", "full", "dots_with_no_batch_dims"])
def test_scanned_and_rematerialised_layers_equal_the_plain_loop(params, policy):
  rng = np.random.default_rng(4)
  batch = {
    "encoder_input_tokens": rng.integers(2, 97, (2, 8)),
    "decoder_target_tokens": rng.integers(2, 97, (2, 5)),
  }
  batch["decoder_input_tokens"] = np.asarray(shift_right(batch["decoder_target_tokens"]))
  ref_loss, ref_grads = jax.value_and_grad(lambda p: _loss_sum(Transformer(CFG), p, batch))(params)
  cfg = CFG.replace(scan_layers=True, remat_policy=policy)
  loss, grads = jax.value_and_grad(lambda p: _loss_sum(Transformer(cfg), p, batch))(
    scan_params(params, CFG)
  )
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(unscan_params(grads, CFG)), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_scanned_layout_declares_a_layers_axis():
  axes = logical_axes(CFG.replace(scan_layers=True))
  assert tuple(axes["encoder"]["layers"]["mlp"]["wi_0"]["kernel"]) == ("layers", "embed", "mlp")
  assert tuple(axes["decoder"]["layers"]["self_attention"]["query"]["kernel"]) == (
    "layers",
    "embed",
    "heads",
    "kv",
  )


def test_every_parameter_has_logical_axis_names():
  axes = logical_axes(CFG)
  shapes = jax.tree.map(lambda x: x.shape, init_params(CFG, jax.random.key(0)))
  flat_axes = jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  flat_shapes = jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple))
  assert len(flat_axes) == len(flat_shapes)
  for spec, shape in zip(flat_axes, flat_shapes):
    assert len(spec) == len(shape) and all(isinstance(a, str) for a in spec)


def test_dropout_is_active_only_when_enabled(params):
  cfg = CFG.replace(dropout_rate=0.5)
  model = Transformer(cfg)
  enc = np.full((1, 6), 5, np.int32)
  dec = np.full((1, 4), 7, np.int32)
  a = model.apply({"params": params}, enc, dec, enable_dropout=False)
  b = model.apply({"params": params}, enc, dec, enable_dropout=False)
  c = model.apply(
    {"params": params}, enc, dec, enable_dropout=True, rngs={"dropout": jax.random.key(1)}
  )
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_bfloat16_activations_keep_float32_params_and_logits(params):
  model = Transformer(CFG.replace(dtype="bfloat16"))
  enc = np.full((1, 6), 5, np.int32)
  dec = np.full((1, 4), 7, np.int32)
  logits = model.apply({"params": params}, enc, dec)
  ref = Transformer(CFG).apply({"params": params}, enc, dec)
  assert logits.dtype == jnp.float32
  assert np.abs(np.asarray(logits) - np.asarray(ref)).max() < 0.1 * np.abs(ref).max()


def test_named_sizes_have_reference_shapes():
  xxl = get_config("xxl")
  assert (xxl.d_model, xxl.num_heads, xxl.num_layers, xxl.head_dim, xxl.d_ff) == (
    4096,
    64,
    24,
    64,
    10240,
  )
  assert 11.0e9 < xxl.num_params() < 11.5e9  # T0 / T5-XXL: ~11B
  assert 2.7e9 < get_config("xl").num_params() < 3.0e9  # T0_3B
  p = init_params(CFG, jax.random.key(0))
  assert sum(x.size for x in jax.tree.leaves(p)) == CFG.num_params()
  with pytest.raises(ValueError, match="Unknown model size 'huge'"):
    get_config("huge")

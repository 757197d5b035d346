"""Sharded runs equal single-device runs; parameters and activations really are laid out as the
rules say. Runs on the 8 fake CPU devices set up in conftest.py."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from t0jax.model.losses import cross_entropy_with_z_loss, loss_normalizer, shift_right
from t0jax.model import T5Config, Transformer, init_params, logical_axes
from t0jax.parallel import hosts
from t0jax.parallel.partitioning import STANDARD_RULES, Partitioner, create_mesh

# Every sharded dimension divisible by up to 8 devices.
CFG = T5Config(
  vocab_size=128,
  d_model=32,
  num_heads=8,
  head_dim=4,
  d_ff=64,
  num_layers=2,
  num_decoder_layers=2,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=16,
)

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")


def _batch():
  rng = np.random.default_rng(0)
  tgt = rng.integers(2, 128, (8, 6)).astype(np.int32)
  tgt[3, 4:] = 0
  enc = rng.integers(2, 128, (8, 10)).astype(np.int32)
  enc[5, 7:] = 0
  return {
    "encoder_input_tokens": enc,
    "decoder_target_tokens": tgt,
    "decoder_input_tokens": np.asarray(shift_right(tgt)),
  }


def _loss_fn(params, batch):
  logits = Transformer(CFG).apply(
    {"params": params},
    batch["encoder_input_tokens"],
    batch["decoder_input_tokens"],
    batch["decoder_target_tokens"],
  )
  weights = batch["decoder_target_tokens"] > 0
  loss, _ = cross_entropy_with_z_loss(logits, batch["decoder_target_tokens"], weights, 1e-4)
  return loss.sum() / loss_normalizer(weights)


@pytest.fixture(scope="module")
def reference():
  params = init_params(CFG, jax.random.key(0))
  with jax.default_device(jax.devices()[0]):
    loss, grads = jax.jit(jax.value_and_grad(_loss_fn))(params, _batch())
  return params, float(loss), jax.tree.map(np.asarray, grads)


@pytest.mark.parametrize("data,model", [(8, 1), (4, 2), (2, 4), (1, 8)])
@pytest.mark.parametrize("rules", ["standard", "fsdp"])
def test_sharded_loss_and_gradients_equal_single_device(reference, data, model, rules):
  params, ref_loss, ref_grads = reference
  part = Partitioner(num_partitions=model, rules=rules)
  assert dict(part.mesh.shape) == {"data": data, "model": model}
  shardings = part.shardings(logical_axes(CFG))
  with part.activate():
    sharded = jax.device_put(params, shardings)
    batch = hosts.global_batch(_batch(), part.batch_sharding, jax.process_count())
    step = jax.jit(jax.value_and_grad(_loss_fn), out_shardings=(part.replicated, shardings))
    loss, grads = step(sharded, batch)
  np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(np.asarray(g), r, atol=1e-5)
  # The gradients come back laid out like the parameters.
  q = grads["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  assert q.sharding.spec == shardings["encoder"]["layers_0"]["attention"]["query"]["kernel"].spec


def test_parameters_are_laid_out_as_the_standard_rules_say():
  part = Partitioner(num_partitions=4)
  params = part.init_params(CFG, jax.random.key(0))
  np.testing.assert_array_equal(  # sharded init draws the same numbers as a plain init
    params["encoder"]["encoder_norm"]["scale"],
    init_params(CFG, jax.random.key(0))["encoder"]["encoder_norm"]["scale"],
  )
  layer = params["encoder"]["layers_0"]
  assert params["token_embedder"]["embedding"].sharding.spec == P("model", None)
  assert layer["attention"]["query"]["kernel"].sharding.spec == P(None, "model", None)
  assert layer["attention"]["out"]["kernel"].sharding.spec == P("model", None, None)
  assert layer["mlp"]["wi_0"]["kernel"].sharding.spec == P(None, "model")
  assert layer["mlp"]["wo"]["kernel"].sharding.spec == P("model", None)
  assert params["decoder"]["logits_dense"]["kernel"].sharding.spec == P(None, "model")
  # A [d_model, d_ff] kernel over 4 model shards: each device holds a quarter of d_ff.
  shard = layer["mlp"]["wi_0"]["kernel"].addressable_shards[0].data
  assert shard.shape == (CFG.d_model, CFG.d_ff // 4)


def test_fsdp_rules_also_shard_parameter_embed_over_data_but_not_activations():
  part = Partitioner(num_partitions=2, rules="fsdp")
  mesh_axes = part.mesh_axes(logical_axes(CFG))
  assert mesh_axes["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"] == P("data", "model")
  assert mesh_axes["token_embedder"]["embedding"] == P("model", "data")
  assert part.mesh_axes(P("batch", "length", "embed")) == P("data", None, None)


def _constrained_hlo(enter):
  """Compiled HLO of a function whose only sharding information is a logical constraint."""
  mesh = create_mesh(num_partitions=2)

  def f(x):
    y = jnp.sin(x) * 2.0
    return nn.with_logical_constraint(y, ("batch", "length", "mlp")) + 1.0

  x = np.ones((8, 4, 16), np.float32)
  with enter(mesh), nn.logical_axis_rules(STANDARD_RULES):
    return jax.jit(f).lower(x).as_text()


def test_activation_constraints_take_effect_under_set_mesh():
  hlo = _constrained_hlo(jax.set_mesh)
  # A constraint splitting batch over 'data' and mlp over 'model'.
  assert 'sharding_constraint %2 <@mesh, [{"data"}, {}, {"model"}]>' in hlo


def test_plain_with_mesh_silently_drops_logical_constraints():
  """Why t0jax enters meshes with `jax.set_mesh`: the old `with mesh:` loses the constraint."""
  hlo = _constrained_hlo(lambda mesh: mesh)
  assert "sharding_constraint" not in hlo


def test_model_activations_are_constrained_inside_the_network():
  part = Partitioner(num_partitions=2)
  params = init_params(CFG, jax.random.key(0))
  batch = _batch()
  with part.activate():
    hlo = jax.jit(lambda p, b: _loss_fn(p, b)).lower(params, batch).as_text()
  # (batch, length, heads, kv) and (batch, length, mlp) constraints inside the layers.
  assert '[{"data"}, {}, {"model"}, {}]' in hlo
  assert '[{"data"}, {}, {"model"}]' in hlo


def test_num_partitions_must_divide_the_devices():
  with pytest.raises(ValueError, match="num_partitions=3 must divide the number of devices"):
    create_mesh(3)


def test_unknown_rule_set_is_named():
  with pytest.raises(ValueError, match="Unknown axis rule set 'fdsp'"):
    Partitioner(rules="fdsp")


def test_global_batch_assembles_rows_over_data_axis():
  part = Partitioner(num_partitions=2)
  local = {"x": np.arange(16 * 3).reshape(16, 3).astype(np.int32)}
  out = hosts.global_batch(local, part.batch_sharding, jax.process_count())["x"]
  assert out.shape == (16, 3) and out.sharding.spec == P("data")
  np.testing.assert_array_equal(np.asarray(out), local["x"])

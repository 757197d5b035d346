"""Hugging Face T5 checkpoints in and out: parity with transformers, layouts, sharding, errors.

Every model here is a tiny random-weight `T5ForConditionalGeneration` built and saved in a temp
directory; nothing downloads.
"""

import functools
import json
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax
import numpy as np
import pytest
import torch
import transformers

from small_models import random_t5
from t0jax.checkpoints import hf
from t0jax.checkpoints import CheckpointError, load_hf_checkpoint, save_hf_checkpoint
from t0jax.model import Transformer, init_params, scan_params

transformers.logging.set_verbosity_error()

# Shapes chosen to catch layout mistakes: heads * head_dim != d_model, decoder depth != encoder
# depth, and inputs (45 tokens) far past relative_attention_max_distance (16).
V11 = dict(
  vocab_size=96,
  d_model=32,
  d_kv=12,
  num_heads=3,
  d_ff=40,
  num_layers=2,
  num_decoder_layers=3,
  feed_forward_proj="gated-gelu",
  tie_word_embeddings=False,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=16,
)
V10 = dict(
  vocab_size=80,
  d_model=48,
  d_kv=8,
  num_heads=4,
  d_ff=56,
  num_layers=3,
  num_decoder_layers=2,
  feed_forward_proj="relu",
  tie_word_embeddings=True,
  relative_attention_num_buckets=12,
  relative_attention_max_distance=20,
)


def make_hf_model(directory, dims, *, separate_head=True, seed=0, dtype=torch.float32):
  """A random HF model saved as safetensors. transformers 5 ties the head to the embedding at
  init; real v1.1 checkpoints (and T0) have their own `lm_head`, so give it one."""
  model = random_t5(dims, separate_head=separate_head, seed=seed)
  model.to(dtype).save_pretrained(directory, safe_serialization=True)
  return model


def batch(vocab_size, seed=0):
  """Two examples, the second with encoder padding; decoder inputs are targets shifted right."""
  rng = np.random.default_rng(seed)
  enc = rng.integers(2, vocab_size, (2, 45)).astype(np.int32)
  enc[1, 29:] = 0
  targets = rng.integers(2, vocab_size, (2, 11)).astype(np.int32)
  dec_in = np.concatenate([np.zeros((2, 1), np.int32), targets[:, :-1]], axis=1)
  return enc, dec_in, targets


def hf_logits(model, enc, dec_in):
  with torch.no_grad():
    return (
      model(
        input_ids=torch.tensor(enc, dtype=torch.long),
        attention_mask=torch.tensor(enc > 0, dtype=torch.long),
        decoder_input_ids=torch.tensor(dec_in, dtype=torch.long),
      )
      .logits.float()
      .numpy()
    )


def random_params(cfg, seed=1):
  """Random values in the tree `init_params` builds (traced for its shapes, not compiled)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  return jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes)


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, params, enc, dec_in, targets):
  return model.apply({"params": params}, enc, dec_in, targets)


def t0jax_logits(cfg, params, enc, dec_in, targets):
  # Equal configs give equal (hashable) modules, so tests sharing a config share one compilation.
  return np.asarray(_forward(Transformer(cfg), params, enc, dec_in, targets))


@pytest.mark.parametrize(
  "dims,separate_head",
  [(V11, True), (V11, False), (V10, False)],
  ids=["v1.1", "v1.1-head-tied-unscaled", "v1.0"],
)
def test_imported_logits_equal_transformers_logits(tmp_path, dims, separate_head):
  model = make_hf_model(tmp_path, dims, separate_head=separate_head)
  cfg, params = load_hf_checkpoint(tmp_path)
  enc, dec_in, targets = batch(dims["vocab_size"])
  ours = t0jax_logits(cfg, params, enc, dec_in, targets)
  np.testing.assert_allclose(ours, hf_logits(model, enc, dec_in), atol=1e-4, rtol=0)


def test_config_maps_every_hf_field(tmp_path):
  make_hf_model(tmp_path, V11)
  cfg, params = load_hf_checkpoint(tmp_path)
  assert (cfg.d_model, cfg.head_dim, cfg.num_heads, cfg.d_ff) == (32, 12, 3, 40)
  assert (cfg.num_layers, cfg.decoder_layers, cfg.vocab_size) == (2, 3, 96)
  assert cfg.mlp_activations == ("gelu", "linear") and not cfg.tie_word_embeddings
  assert (cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance) == (8, 16)
  assert params["encoder"]["layers_0"]["attention"]["query"]["kernel"].shape == (32, 3, 12)
  assert params["decoder"]["layers_2"]["self_attention"]["out"]["kernel"].shape == (3, 12, 32)
  assert params["decoder"]["relpos_bias"]["rel_embedding"].shape == (3, 8)
  assert params["decoder"]["logits_dense"]["kernel"].shape == (32, 96)


def test_scanned_import_equals_unscanned(tmp_path):
  make_hf_model(tmp_path, V11)
  cfg, params = load_hf_checkpoint(tmp_path)
  scan_cfg, scanned = load_hf_checkpoint(tmp_path, scan_layers=True)
  assert scan_cfg.scan_layers and "layers" in scanned["encoder"]
  jax.tree.map(np.testing.assert_array_equal, scanned, scan_params(params, cfg))
  enc, dec_in, targets = batch(96)
  np.testing.assert_allclose(
    t0jax_logits(scan_cfg, scanned, enc, dec_in, targets),
    t0jax_logits(cfg, params, enc, dec_in, targets),
    atol=1e-5,
    rtol=0,
  )


def test_bfloat16_tensors_on_disk_are_upcast_exactly(tmp_path):
  model = make_hf_model(tmp_path, V11, dtype=torch.bfloat16)
  _, params = load_hf_checkpoint(tmp_path, dtype=np.float32)
  q = model.encoder.block[1].layer[0].SelfAttention.q.weight.detach().float().numpy()
  kernel = params["encoder"]["layers_1"]["attention"]["query"]["kernel"]
  assert kernel.dtype == np.float32
  np.testing.assert_array_equal(kernel, q.T.reshape(32, 3, 12))


@pytest.mark.parametrize(
  "dims,scan", [(V11, False), (V10, False), (V11, True)], ids=["v1.1", "v1.0", "v1.1-scanned"]
)
def test_exported_checkpoint_loads_in_transformers_with_equal_outputs(tmp_path, dims, scan):
  cfg = hf.config_from_hf(dict(dims, model_type="t5")).replace(dropout_rate=0.0, scan_layers=scan)
  params = random_params(cfg)
  out = save_hf_checkpoint(params, cfg, tmp_path / "export")
  model = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
  enc, dec_in, targets = batch(cfg.vocab_size, seed=3)
  np.testing.assert_allclose(
    hf_logits(model, enc, dec_in),
    t0jax_logits(cfg, params, enc, dec_in, targets),
    atol=1e-4,
    rtol=0,
  )


def test_sharded_export_reloads_identically_in_t0jax_and_transformers(tmp_path):
  make_hf_model(tmp_path / "src", V11)
  cfg, params = load_hf_checkpoint(tmp_path / "src")
  out = save_hf_checkpoint(params, cfg, tmp_path / "sharded", max_shard_size="20KB")
  index = json.loads((out / hf.INDEX_FILE).read_text())
  shards = sorted(set(index["weight_map"].values()))
  assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
  assert not (out / hf.WEIGHTS_FILE).exists()
  cfg2, params2 = load_hf_checkpoint(out)
  assert cfg2 == cfg
  jax.tree.map(np.testing.assert_array_equal, params2, params)
  model = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
  enc, dec_in, targets = batch(96)
  np.testing.assert_allclose(
    hf_logits(model, enc, dec_in),
    t0jax_logits(cfg, params, enc, dec_in, targets),
    atol=1e-4,
    rtol=0,
  )


def test_bfloat16_export_and_vocabulary_copy(tmp_path):
  make_hf_model(tmp_path / "src", V10)
  cfg, params = load_hf_checkpoint(tmp_path / "src")
  (tmp_path / "spiece.model").write_bytes(b"sentencepiece bytes")
  out = save_hf_checkpoint(
    params, cfg, tmp_path / "bf16", dtype="bfloat16", vocab_path=tmp_path / "spiece.model"
  )
  assert (out / "spiece.model").read_bytes() == b"sentencepiece bytes"
  assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
  _, reloaded = load_hf_checkpoint(out)
  np.testing.assert_allclose(
    reloaded["token_embedder"]["embedding"],
    params["token_embedder"]["embedding"],
    rtol=1e-2,
    atol=1e-2,
  )


def test_export_refuses_a_non_empty_directory_and_leaves_no_partial_files(tmp_path, monkeypatch):
  make_hf_model(tmp_path / "src", V10)
  cfg, params = load_hf_checkpoint(tmp_path / "src")
  with pytest.raises(CheckpointError, match="already exists"):
    save_hf_checkpoint(params, cfg, tmp_path / "src")

  def crash(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(hf, "save_file", crash)
  with pytest.raises(OSError, match="disk full"):
    save_hf_checkpoint(params, cfg, tmp_path / "new")
  with pytest.raises(OSError, match="disk full"):
    save_hf_checkpoint(params, cfg, tmp_path / "src", overwrite=True)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
  assert (tmp_path / "src" / "model.safetensors").exists()


def test_export_overwrite_replaces_the_old_checkpoint(tmp_path):
  make_hf_model(tmp_path / "ckpt", V10)
  cfg, params = load_hf_checkpoint(tmp_path / "ckpt")
  (tmp_path / "ckpt" / "stale.txt").write_text("old")
  save_hf_checkpoint(params, cfg, tmp_path / "ckpt", overwrite=True)
  assert not (tmp_path / "ckpt" / "stale.txt").exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_export_rejects_params_that_do_not_match_the_config(tmp_path):
  make_hf_model(tmp_path / "src", V11)
  cfg, params = load_hf_checkpoint(tmp_path / "src")
  with pytest.raises(CheckpointError, match=r"T5Config does not describe.*logits_dense/kernel"):
    save_hf_checkpoint(params, cfg.replace(tie_word_embeddings=True), tmp_path / "a")
  with pytest.raises(
    CheckpointError,
    match=r"encoder/layers_0/mlp/wi_0/kernel has shape \[32, 40\], "
    r"expected \[32, 64\]",
  ):
    save_hf_checkpoint(params, cfg.replace(d_ff=64), tmp_path / "b")


# ---------------------------------------------------------------------------------------------
# Import errors name the file or tensor and say what to do.


def test_missing_directory_and_missing_config_are_reported(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_hf_checkpoint(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="has no config.json"):
    load_hf_checkpoint(tmp_path / "empty")


def test_safetensors_loader_on_a_bin_only_checkpoint_points_to_the_entry_point(tmp_path):
  make_hf_model(tmp_path, V10)
  (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
  with pytest.raises(FileNotFoundError) as err:
    load_hf_checkpoint(tmp_path)
  msg = str(err.value)
  assert "pytorch_model.bin" in msg and "t0jax.checkpoints.load" in msg


def _edit_config(directory, **changes):
  path = directory / "config.json"
  config = json.loads(path.read_text())
  config.update(changes)
  path.write_text(json.dumps(config))


@pytest.mark.parametrize(
  "changes,pattern",
  [
    (
      dict(architectures=["UMT5ForConditionalGeneration"], model_type="umt5"),
      "umt5.*not supported",
    ),
    (dict(architectures=["T5EncoderModel"]), "T5EncoderModel.*not supported"),
    (dict(architectures=["LongT5ForConditionalGeneration"], model_type="longt5"), "LongT5"),
    (dict(feed_forward_proj="gated-silu"), "feed_forward_proj 'gated-silu' is unsupported"),
  ],
)
def test_unsupported_models_are_refused_by_name(tmp_path, changes, pattern):
  make_hf_model(tmp_path, V11)
  _edit_config(tmp_path, **changes)
  with pytest.raises(CheckpointError, match=pattern):
    load_hf_checkpoint(tmp_path)


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
  make_hf_model(tmp_path, V11)
  _edit_config(tmp_path, d_ff=64)
  with pytest.raises(CheckpointError) as err:
    load_hf_checkpoint(tmp_path)
  msg = str(err.value)
  assert "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in msg
  assert "encoder/layers_0/mlp/wi_0/kernel" in msg and "[40, 32]" in msg and "[64, 32]" in msg


def test_missing_and_unexpected_tensors_are_named(tmp_path):
  make_hf_model(tmp_path, V10)
  _edit_config(tmp_path, num_layers=4)
  with pytest.raises(CheckpointError, match=r"missing.*encoder\.block\.3\."):
    load_hf_checkpoint(tmp_path)
  _edit_config(tmp_path, num_layers=2)
  with pytest.raises(CheckpointError, match=r"unexpected.*encoder\.block\.2\."):
    load_hf_checkpoint(tmp_path)


def test_index_naming_a_missing_shard_is_reported(tmp_path):
  make_hf_model(tmp_path / "src", V11)
  cfg, params = load_hf_checkpoint(tmp_path / "src")
  out = save_hf_checkpoint(params, cfg, tmp_path / "sharded", max_shard_size="20KB")
  shard = sorted(set(json.loads((out / hf.INDEX_FILE).read_text())["weight_map"].values()))[1]
  (out / shard).unlink()
  with pytest.raises(FileNotFoundError, match=f"lists shard {shard}, which is missing"):
    load_hf_checkpoint(out)

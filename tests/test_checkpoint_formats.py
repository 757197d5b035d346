"""Every published checkpoint format, written by its real writer, scores as transformers does.

`pytorch_model.bin` comes from `torch.save` (transformers 5 no longer writes it:
`save_pretrained(safe_serialization=False)` writes safetensors), `flax_model.msgpack` from
`flax.serialization.to_bytes` in HF's Flax T5 layout, T5X checkpoints from tensorstore in T5X's
layout. Models are tiny and random; nothing downloads.
"""

import json
import os
import pickle
import zipfile

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import gin
import jax
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers
from flax import serialization, traverse_util

from t0jax import checkpoints
from t0jax.checkpoints import CheckpointError, byteio, hf, t5x, torch_bin
from t0jax.cli import convert, predict
from small_models import random_t5, state_dict
from test_predict_cli import QUESTION, _train_vocab, tzero_scores
from t0jax.data.vocab import Vocabulary
from t0jax.model import EncoderDecoderModel, init_params

transformers.logging.set_verbosity_error()

DIMS = dict(
  vocab_size=128,
  d_model=32,
  d_kv=8,
  num_heads=4,
  d_ff=48,
  num_layers=2,
  num_decoder_layers=3,
  feed_forward_proj="gated-gelu",
  tie_word_embeddings=False,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=16,
  dropout_rate=0.0,
  decoder_start_token_id=0,
)
CHOICES = ["yes", "no", "maybe"]


def _model(
  config_cls=transformers.T5Config, model_cls=transformers.T5ForConditionalGeneration, **dims
):
  return random_t5({**DIMS, **dims}, config_cls=config_cls, model_cls=model_cls)


@pytest.fixture(scope="module")
def model():
  return _model()


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "spiece.model"
  _train_vocab(path)
  return path


def _hf_dir(directory, model, vocab_file):
  directory.mkdir(parents=True, exist_ok=True)
  model.config.save_pretrained(directory)
  (directory / "spiece.model").write_bytes(vocab_file.read_bytes())
  return directory


def _predict_scores(capsys, directory, *extra):
  rc = predict.main(
    [
      "--checkpoint",
      str(directory),
      "--input",
      QUESTION,
      "--choices",
      "|||".join(CHOICES),
      "--json",
      *map(str, extra),
    ]
  )
  out, err = capsys.readouterr()
  assert rc == 0, err
  return np.array(json.loads(out)["scores"])


def _expected(model, vocab_file):
  return tzero_scores(model, Vocabulary(vocab_file), QUESTION, CHOICES)


# ---------------------------------------------------------------------------------------------
# pytorch_model.bin


def test_torch_save_bin_scores_equal_transformers_summed_log_probs(
  tmp_path, model, vocab_file, capsys
):
  directory = _hf_dir(tmp_path / "t0", model, vocab_file)
  torch.save(state_dict(model), directory / "pytorch_model.bin")
  assert checkpoints.read_config(directory).format == "torch_bin"
  np.testing.assert_allclose(
    _predict_scores(capsys, directory), _expected(model, vocab_file), atol=1e-3, rtol=0
  )


def _shard_by_hand(directory, state):
  """Two shards and an index, as the hub's sharded pytorch_model.bin files are."""
  names = sorted(state)
  shards = {
    "pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
    "pytorch_model-00002-of-00002.bin": names[len(names) // 2 :],
  }
  for file, keys in shards.items():
    torch.save({k: state[k] for k in keys}, directory / file)
  weight_map = {k: file for file, keys in shards.items() for k in keys}
  (directory / "pytorch_model.bin.index.json").write_text(
    json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
  )
  return weight_map


def test_sharded_bin_with_index_loads_the_same_parameters(tmp_path, model, vocab_file):
  single = _hf_dir(tmp_path / "single", model, vocab_file)
  torch.save(state_dict(model), single / "pytorch_model.bin")
  sharded = _hf_dir(tmp_path / "sharded", model, vocab_file)
  _shard_by_hand(sharded, state_dict(model))
  _, a, _ = checkpoints.load(single)
  _, b, info = checkpoints.load(sharded)
  assert info.format == "torch_bin"
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_bin_tensors_are_read_exactly(tmp_path, model, vocab_file, dtype):
  directory = _hf_dir(tmp_path, model, vocab_file)
  state = {k: v.to(dtype) for k, v in state_dict(model).items()}
  torch.save(state, directory / "pytorch_model.bin")
  _, params = torch_bin.load_params(directory)
  q = state["decoder.block.2.layer.1.EncDecAttention.q.weight"].float().numpy()
  np.testing.assert_array_equal(
    params["decoder"]["layers_2"]["encoder_decoder_attention"]["query"]["kernel"],
    q.T.reshape(32, 4, 8),
  )


@pytest.mark.parametrize("transpose", ["xla", "numpy tiles"])
@pytest.mark.parametrize("whole_bytes", [0, None], ids=["by blocks", "whole"])
def test_blockwise_transposed_reads_equal_whole_reads_and_land_in_their_shardings(
  tmp_path, model, vocab_file, monkeypatch, transpose, whole_bytes
):
  directory = _hf_dir(tmp_path, model, vocab_file)
  torch.save(state_dict(model), directory / "pytorch_model.bin")
  _, whole = checkpoints.load(directory)[:2]
  if whole_bytes is not None:
    monkeypatch.setattr(hf, "_WHOLE_BYTES", whole_bytes)
  monkeypatch.setattr(hf, "_BLOCK_BYTES", 3 * 32 * 4)  # 3 rows a block: ragged last blocks
  monkeypatch.setattr(byteio, "_TILE", 5)  # ragged tiles
  monkeypatch.setattr(byteio, "_XLA_MIN", 0 if transpose == "xla" else 1 << 62)
  cfg = checkpoints.read_config(directory).cfg
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
  spec = lambda shape: jax.sharding.PartitionSpec(
    *["data" if i == 0 and n % 4 == 0 else None for i, n in enumerate(shape)]
  )
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  shardings = jax.tree.map(lambda s: jax.sharding.NamedSharding(mesh, spec(s.shape)), shapes)
  _, placed, _ = checkpoints.load(directory, shardings=shardings)
  jax.tree.map(np.testing.assert_array_equal, placed, whole)
  jax.tree.map(lambda x, s: assert_same_sharding(x.sharding, s), placed, shardings)


@pytest.mark.parametrize("xla_min", [0, 1 << 62], ids=["xla", "numpy tiles"])
def test_transposes_cast_like_numpy(monkeypatch, xla_min):
  monkeypatch.setattr(byteio, "_XLA_MIN", xla_min)
  block = np.arange(6 * 7, dtype=np.float32).reshape(6, 7) / 7
  for dtype in (np.float32, ml_dtypes.bfloat16, np.float16):
    got = byteio.transposed(block.astype(ml_dtypes.bfloat16), dtype)
    np.testing.assert_array_equal(got, block.astype(ml_dtypes.bfloat16).T.astype(dtype))
    assert got.dtype == dtype and got.shape == (7, 6)


def assert_same_sharding(a, b):
  assert a.is_equivalent_to(b, 2) if hasattr(a, "is_equivalent_to") else a == b


def test_strided_and_storage_sharing_tensors_are_rebuilt_like_torch(tmp_path):
  base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
  state = {"t": base.t(), "rows": base[2:5], "cols": base[:, 3:7], "same": base}
  torch.save(state, tmp_path / "x.bin")
  archive = torch_bin._Archive(torch_bin.epath.Path(tmp_path / "x.bin"))
  for name, tensor in state.items():
    np.testing.assert_array_equal(archive.read(archive.tensors[name]), tensor.numpy())


class _Payload:
  def __init__(self, call, arg):
    self.call, self.arg = call, arg

  def __reduce__(self):
    return self.call, (self.arg,)


@pytest.mark.parametrize("call", ["os.system", "builtins.eval"])
def test_pickle_calling_anything_else_is_refused_before_it_runs(tmp_path, call):
  marker = tmp_path / "pwned"
  command = f"touch {marker}" if call == "os.system" else f"open({str(marker)!r}, 'w')"
  fn = os.system if call == "os.system" else eval
  directory = tmp_path / "evil"
  directory.mkdir()
  (directory / "config.json").write_text(json.dumps({"model_type": "t5"}))
  with zipfile.ZipFile(directory / "pytorch_model.bin", "w") as z:
    z.writestr(
      "archive/data.pkl", pickle.dumps({"shared.weight": _Payload(fn, command)}, protocol=2)
    )
  with pytest.raises(CheckpointError) as err:
    checkpoints.load(directory)
  message = str(err.value)
  assert "pytorch_model.bin" in message and "refused" in message
  assert ("system" in message) if call == "os.system" else ("builtins.eval" in message)
  assert not marker.exists()


def test_legacy_pre_zip_bin_is_refused_with_how_to_convert(tmp_path, model, vocab_file):
  directory = _hf_dir(tmp_path, model, vocab_file)
  torch.save(
    state_dict(model), directory / "pytorch_model.bin", _use_new_zipfile_serialization=False
  )
  with pytest.raises(CheckpointError, match=r"pytorch_model.bin: not a zip archive.*torch.save"):
    checkpoints.load(directory)


def test_truncated_bin_is_reported_as_corrupt(tmp_path, model, vocab_file):
  directory = _hf_dir(tmp_path, model, vocab_file)
  path = directory / "pytorch_model.bin"
  torch.save(state_dict(model), path)
  path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
  with pytest.raises(CheckpointError, match=r"pytorch_model.bin: .*(corrupt|truncated)"):
    checkpoints.load(directory)


def test_shard_missing_and_index_naming_absent_tensors_are_reported(tmp_path, model, vocab_file):
  directory = _hf_dir(tmp_path, model, vocab_file)
  weight_map = _shard_by_hand(directory, state_dict(model))
  index = directory / "pytorch_model.bin.index.json"
  index.write_text(
    json.dumps({"weight_map": {**weight_map, "extra.weight": "pytorch_model-00002-of-00002.bin"}})
  )
  with pytest.raises(
    CheckpointError,
    match=r"index.json names 1 tensor\(s\) no shard holds.*"
    r"extra.weight",
  ):
    checkpoints.load(directory)
  (directory / "pytorch_model-00002-of-00002.bin").unlink()
  with pytest.raises(
    CheckpointError, match="lists shard pytorch_model-00002-of-00002.bin, which is missing"
  ):
    checkpoints.load(directory)


def test_unknown_tensor_and_shape_mismatch_are_named(tmp_path, model, vocab_file):
  directory = _hf_dir(tmp_path, model, vocab_file)
  state = state_dict(model)
  torch.save(
    {**state, "encoder.block.0.layer.0.SelfAttention.gate.weight": torch.zeros(2)},
    directory / "pytorch_model.bin",
  )
  with pytest.raises(CheckpointError, match="unexpected tensor.*SelfAttention.gate.weight"):
    checkpoints.load(directory)
  state["decoder.block.1.layer.2.DenseReluDense.wo.weight"] = torch.zeros(32, 40)
  torch.save(state, directory / "pytorch_model.bin")
  with pytest.raises(
    CheckpointError,
    match=r"DenseReluDense.wo.weight .*shape \[32, 40\], "
    r"expected \[32, 48\]",
  ):
    checkpoints.load(directory)


# ---------------------------------------------------------------------------------------------
# flax_model.msgpack


def _flax_tree(model, dtype=np.float32):
  """HF's Flax T5 parameters: PyTorch names with '/', kernels [in, out], embeddings named
  'embedding', layer norms 'weight'; the embed_tokens copies do not exist in Flax."""
  flat = {}
  for name, value in model.state_dict().items():
    if ".embed_tokens." in name:
      continue
    parts, array = name.split("."), value.detach().numpy()
    if "layer_norm" not in name:
      if name == "shared.weight" or "relative_attention_bias" in name:
        parts[-1] = "embedding"
      else:
        parts[-1], array = "kernel", array.T
    flat[tuple(parts)] = array.astype(dtype)
  return traverse_util.unflatten_dict(flat)


def test_flax_msgpack_scores_equal_transformers_summed_log_probs(
  tmp_path, model, vocab_file, capsys
):
  directory = _hf_dir(tmp_path, model, vocab_file)
  (directory / "flax_model.msgpack").write_bytes(serialization.to_bytes(_flax_tree(model)))
  assert checkpoints.read_config(directory).format == "flax_msgpack"
  np.testing.assert_allclose(
    _predict_scores(capsys, directory), _expected(model, vocab_file), atol=1e-3, rtol=0
  )


def test_sharded_bf16_flax_msgpack_loads_as_the_bin_does(tmp_path, model, vocab_file):
  directory = _hf_dir(tmp_path / "flax", model, vocab_file)
  flat = traverse_util.flatten_dict(_flax_tree(model, ml_dtypes.bfloat16), sep="/")
  names = sorted(flat)
  shards = {
    "flax_model-00001-of-00002.msgpack": names[:20],
    "flax_model-00002-of-00002.msgpack": names[20:],
  }
  for file, keys in shards.items():
    (directory / file).write_bytes(
      serialization.to_bytes(traverse_util.unflatten_dict({k: flat[k] for k in keys}, sep="/"))
    )
  (directory / "flax_model.msgpack.index.json").write_text(
    json.dumps({"weight_map": {k: file for file, keys in shards.items() for k in keys}})
  )
  bin_dir = _hf_dir(tmp_path / "bin", model, vocab_file)
  torch.save(
    {k: v.to(torch.bfloat16) for k, v in state_dict(model).items()}, bin_dir / "pytorch_model.bin"
  )
  _, a, _ = checkpoints.load(directory)
  _, b, _ = checkpoints.load(bin_dir)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_corrupt_msgpack_is_reported(tmp_path, model, vocab_file):
  directory = _hf_dir(tmp_path, model, vocab_file)
  data = serialization.to_bytes(_flax_tree(model))
  (directory / "flax_model.msgpack").write_bytes(data[: len(data) - 100])
  with pytest.raises(CheckpointError, match="flax_model.msgpack: truncated"):
    checkpoints.load(directory)


# ---------------------------------------------------------------------------------------------
# T5X


def write_t5x(step_dir, params, step, *, version=3, inline=()):
  """A T5X native checkpoint as T5X writes it: 2-D attention kernels, bf16 gzip zarr arrays
  named by their flattened path, specs with paths relative to the step directory."""
  import tensorstore as ts

  step_dir.mkdir(parents=True)

  def write(path, value):
    name = "target." + ".".join(path)
    value = np.asarray(value, np.float32).astype(ml_dtypes.bfloat16)
    if path[-2:-1] in (("query",), ("key",), ("value",)):
      value = value.reshape(value.shape[0], -1)
    elif path[-2:] == ("out", "kernel"):
      value = value.reshape(-1, value.shape[-1])
    if name in inline:
      return value
    spec = {
      "driver": "zarr",
      "dtype": "bfloat16",
      "kvstore": {"driver": "file", "path": str(step_dir / name)},
      "metadata": {
        "compressor": {"id": "gzip"},
        "shape": list(value.shape),
        "chunks": list(value.shape),
      },
    }
    ts.open(spec, create=True).result().write(value).result()
    spec["kvstore"]["path"] = name
    return spec

  def walk(node, path):
    return {
      k: walk(v, path + (k,)) if isinstance(v, dict) else write(path + (k,), v)
      for k, v in node.items()
    }

  tree = {
    "version": version,
    "optimizer": {
      "target": walk(params, ()),
      "state": {"step": np.asarray(step, np.int32), "param_states": {}},
    },
  }
  (step_dir / "checkpoint").write_bytes(serialization.msgpack_serialize(tree))


def _bf16(params):
  return jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16).astype(np.float32), params)


@pytest.fixture(scope="module")
def t5x_pair(tmp_path_factory, vocab_file):
  """A T5X model dir and an HF safetensors dir holding the same (bf16-rounded) weights of a
  model with T5 1.1's relative attention max distance (which a T5X checkpoint does not hold)."""
  root = tmp_path_factory.mktemp("t5x")
  t5 = _model(relative_attention_max_distance=128)
  src = _hf_dir(root / "src", t5, vocab_file)
  torch.save(state_dict(t5), src / "pytorch_model.bin")
  cfg, params = torch_bin.load_params(src)
  params = _bf16(params)
  write_t5x(
    root / "model" / "checkpoint_1100", params, 1100, inline=("target.encoder.encoder_norm.scale",)
  )
  hf.save_hf_checkpoint(params, cfg, root / "same", vocab_path=str(vocab_file))
  return root / "model", root / "same", cfg


def test_t5x_scores_equal_the_same_weights_from_safetensors(t5x_pair, vocab_file, capsys):
  model_dir, same, _ = t5x_pair
  ours = _predict_scores(capsys, model_dir / "checkpoint_1100", "--vocab", vocab_file)
  np.testing.assert_allclose(ours, _predict_scores(capsys, same), atol=1e-5, rtol=0)


def test_predict_takes_gin_overrides_for_what_t5x_shapes_cannot_tell(
  tmp_path, model, vocab_file, capsys
):
  """The fixture model's relative attention max distance is 16; a T5X checkpoint does not hold
  it, so predict assumes T5 1.1's 128 unless gin says otherwise, on its command line."""
  src = _hf_dir(tmp_path / "src", model, vocab_file)
  torch.save(state_dict(model), src / "pytorch_model.bin")
  cfg, params = torch_bin.load_params(src)
  params = _bf16(params)
  write_t5x(tmp_path / "t5x" / "checkpoint_10", params, 10)
  hf.save_hf_checkpoint(params, cfg, tmp_path / "same", vocab_path=str(vocab_file))
  same = _predict_scores(capsys, tmp_path / "same")
  t5x_dir = tmp_path / "t5x" / "checkpoint_10"
  assumed = _predict_scores(capsys, t5x_dir, "--vocab", vocab_file)
  assert np.abs(assumed - same).max() > 1e-3  # 128 is not this model's distance
  try:
    told = _predict_scores(
      capsys, t5x_dir, "--vocab", vocab_file, "--gin.T5Config.relative_attention_max_distance=16"
    )
  finally:
    gin.clear_config()
  np.testing.assert_allclose(told, same, atol=1e-5, rtol=0)
  in_a_file = tmp_path / "distance.gin"
  in_a_file.write_text("T5Config.relative_attention_max_distance = 16\n")
  try:
    from_file = _predict_scores(capsys, t5x_dir, "--vocab", vocab_file, f"--gin_file={in_a_file}")
  finally:
    gin.clear_config()  # the command's bindings stay in gin, as after any command
  np.testing.assert_allclose(from_file, same, atol=1e-5, rtol=0)


def test_t5x_config_is_inferred_from_shapes_and_the_step_kept(t5x_pair):
  model_dir, _, cfg = t5x_pair
  info = checkpoints.read_config(model_dir)  # the model dir: its latest step
  assert info.format == "t5x" and info.step == 1100 and info.vocabulary is None
  assert t5x.read_config(model_dir, {}).shape_signature() == cfg.shape_signature()
  overridden = t5x.read_config(model_dir, {"relative_attention_max_distance": 64})
  assert overridden.relative_attention_max_distance == 64


def test_orbax_based_t5x_loads_the_same_weights(tmp_path, t5x_pair):
  """T5X with use_orbax=True: `checkpoint_<step>/state/`, an Orbax PyTree of the train state
  dict ({"target": params, "state": {...}}), read one parameter at a time."""
  import orbax.checkpoint as ocp

  model_dir, same, _ = t5x_pair
  cfg, expected, _ = checkpoints.load(same)
  target = jax.tree.map(
    lambda x: np.asarray(x).astype(ml_dtypes.bfloat16), jax.tree.map(np.asarray, expected)
  )
  target["encoder"]["layers_1"]["attention"]["query"]["kernel"] = target["encoder"]["layers_1"][
    "attention"
  ]["query"]["kernel"].reshape(cfg.d_model, -1)  # T5X's 2-D kernel
  state = {"target": target, "state": {"step": np.int32(1200), "param_states": {}}}
  ocp.PyTreeCheckpointer().save(str(tmp_path / "run" / "checkpoint_1200" / "state"), state)
  loaded, params, info = checkpoints.load(tmp_path / "run")
  assert (info.format, info.step) == ("t5x", 1200)
  assert loaded.shape_signature() == cfg.shape_signature()
  jax.tree.map(np.testing.assert_array_equal, params, expected)


def test_t5x_unsupported_version_unreadable_orbax_and_unknown_names_are_refused(tmp_path, t5x_pair):
  _, _, cfg = t5x_pair
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  params = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes)
  write_t5x(tmp_path / "old" / "checkpoint_5", params, 5, version=1)
  with pytest.raises(
    CheckpointError,
    match=r"checkpoint: T5X checkpoint version 1 is not "
    r"supported",
  ):
    checkpoints.load(tmp_path / "old" / "checkpoint_5")
  (tmp_path / "orbax" / "checkpoint_7" / "state").mkdir(parents=True)
  with pytest.raises(CheckpointError, match="not a readable Orbax-based T5X checkpoint"):
    checkpoints.load(tmp_path / "orbax" / "checkpoint_7")
  params["encoder"]["layers_0"]["attention"]["gate"] = {"kernel": np.zeros((32, 32), np.float32)}
  write_t5x(tmp_path / "odd" / "checkpoint_9", params, 9)
  with pytest.raises(CheckpointError, match="encoder/layers_0/attention/gate/kernel"):
    checkpoints.load(tmp_path / "odd" / "checkpoint_9")


# ---------------------------------------------------------------------------------------------
# t0jax convert


def _logits(model, seed=0):
  rng = np.random.default_rng(seed)
  enc = torch.tensor(rng.integers(2, model.config.vocab_size, (2, 21)))
  dec = torch.tensor(rng.integers(2, model.config.vocab_size, (2, 7)))
  with torch.no_grad():
    return model(input_ids=enc, decoder_input_ids=dec).logits.numpy()


def test_convert_bin_to_hf_round_trips_to_equal_transformers_logits(
  tmp_path, model, vocab_file, capsys
):
  src = _hf_dir(tmp_path / "src", model, vocab_file)
  torch.save(state_dict(model), src / "pytorch_model.bin")
  assert convert.main([str(src), str(tmp_path / "dst"), "--max_shard_size", "20KB"]) == 0
  assert "from a torch_bin checkpoint" in capsys.readouterr().out
  written = sorted(p.name for p in (tmp_path / "dst").iterdir())
  assert "spiece.model" in written and "model.safetensors.index.json" in written
  back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "dst").eval()
  np.testing.assert_allclose(_logits(back), _logits(model), atol=1e-5, rtol=0)
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_convert_t5x_to_hf_and_t0jax_keeps_the_weights(tmp_path, t5x_pair, vocab_file):
  model_dir, same, _ = t5x_pair
  gin = "--gin.T5Config.relative_attention_max_distance=64"  # what shapes cannot tell
  assert convert.main([str(model_dir), str(tmp_path / "hf"), "--vocab", str(vocab_file), gin]) == 0
  assert convert.main([str(model_dir), str(tmp_path / "t0jax"), "--to", "t0jax", gin]) == 0
  _, expected, _ = checkpoints.load(same)
  for dst, fmt, step in (("hf", "hf", None), ("t0jax", "orbax", 1100)):
    cfg, params, info = checkpoints.load(tmp_path / dst)
    assert (info.format, info.step, cfg.relative_attention_max_distance) == (fmt, step, 64)
    jax.tree.map(np.testing.assert_array_equal, params, expected)


def test_convert_refuses_a_non_empty_destination(tmp_path, model, vocab_file, capsys):
  src = _hf_dir(tmp_path / "src", model, vocab_file)
  torch.save(state_dict(model), src / "pytorch_model.bin")
  (tmp_path / "dst").mkdir()
  (tmp_path / "dst" / "notes.txt").write_text("mine")
  assert convert.main([str(src), str(tmp_path / "dst")]) == 2
  err = capsys.readouterr().err
  assert "DST" in err and "not empty" in err and "Traceback" not in err
  assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("to", ["hf", "t0jax"])
def test_an_interrupted_convert_leaves_no_destination(tmp_path, model, vocab_file, monkeypatch, to):
  src = _hf_dir(tmp_path / "src", model, vocab_file)
  torch.save(state_dict(model), src / "pytorch_model.bin")
  from t0jax.checkpoints import orbax

  owner, name = (hf, "save_file") if to == "hf" else (orbax.Checkpointer, "save")
  real, written = getattr(owner, name), []

  def write_then_interrupt(*args, **kwargs):  # Ctrl-C once a first file has been written
    written.append(real(*args, **kwargs))
    raise KeyboardInterrupt

  monkeypatch.setattr(owner, name, write_then_interrupt)
  with pytest.raises(KeyboardInterrupt):
    convert.main([str(src), str(tmp_path / "dst"), "--to", to, "--max_shard_size", "20KB"])
  assert written and sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# ---------------------------------------------------------------------------------------------
# mT5 / mT0


def test_mt5_shaped_model_loads_and_scores_equal_transformers(tmp_path, vocab_file, capsys):
  mt5 = _model(
    transformers.MT5Config,
    transformers.MT5ForConditionalGeneration,
    vocab_size=250112,
    d_model=8,
    d_kv=4,
    num_heads=2,
    d_ff=12,
    num_layers=1,
    num_decoder_layers=1,
  )
  directory = _hf_dir(tmp_path, mt5, vocab_file)
  torch.save(state_dict(mt5), directory / "pytorch_model.bin")
  info = checkpoints.read_config(directory)
  assert info.cfg.vocab_size == 250112 and not info.cfg.tie_word_embeddings
  np.testing.assert_allclose(
    _predict_scores(capsys, directory), _expected(mt5, vocab_file), atol=1e-3, rtol=0
  )
  # The hub's mT5/mT0 configs say tie_word_embeddings=false (transformers 5 writes true): same.
  config = json.loads((directory / "config.json").read_text())
  (directory / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
  assert checkpoints.read_config(directory).cfg == info.cfg
  # Fine-tuning: the training loss and its gradient on the loaded parameters.
  cfg, params, _ = checkpoints.load(directory)
  rng = np.random.default_rng(0)
  enc, targets = rng.integers(2, 250112, (2, 9)), rng.integers(2, 250112, (2, 5))
  batch = {
    "encoder_input_tokens": enc,
    "decoder_target_tokens": targets,
    "decoder_input_tokens": np.concatenate([np.zeros((2, 1), int), targets[:, :-1]], 1),
  }
  model = EncoderDecoderModel.from_config(cfg)
  loss, grads = jax.value_and_grad(lambda p: model.loss_sums(p, batch)[0])(params)
  with torch.no_grad():
    expected = mt5(input_ids=torch.tensor(enc), labels=torch.tensor(targets)).loss * targets.size
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-4)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))

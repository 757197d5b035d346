"""predict, eval and train read checkpoints through one entry point (t0jax/checkpoints), so they
accept the same paths: a t0jax MODEL_DIR, its checkpoints/ folder, one step folder, and a Hugging
Face directory; and they reject a folder that is none of these with the same message."""

import json
import os
import shutil

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax
import numpy as np
import pytest

from t0jax import checkpoints
from t0jax.cli import eval as eval_cli
from t0jax.cli import predict
from t0jax.model import T5Config, init_params, logical_axes, scan_params
from t0jax.parallel.partitioning import Partitioner
from t0jax.train import trainer

DEMO_VOCAB = os.path.join(os.path.dirname(__file__), "..", "tasks", "demo", "spiece.model")
CFG = T5Config(
  vocab_size=896,
  d_model=32,
  num_heads=2,
  head_dim=8,
  d_ff=48,
  num_layers=1,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=16,
)
TASK = "demo_story_complete_the_sentence_score_eval"
STEP = 7
NOT_A_CHECKPOINT = "not a checkpoint t0jax can read; expected a Hugging Face T5 directory"


def _random_params(cfg, seed=0):
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  return jax.tree.map(lambda s: rng.normal(0, 0.4, s.shape).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
  """The same weights as a t0jax run (three ways to name it) and as an HF directory."""
  from t0jax.checkpoints.orbax import Checkpointer

  root = tmp_path_factory.mktemp("checkpoint_paths")
  params = _random_params(CFG)
  run = root / "run"
  ckpt = Checkpointer(str(run / "checkpoints"), async_save=False)
  ckpt.save(
    STEP,
    {"step": np.int32(STEP), "params": params},
    {"step": STEP},
    {"model": CFG.shape_signature(), "model_full": CFG.to_dict()},
  )
  ckpt.close()
  shutil.copyfile(DEMO_VOCAB, run / "spiece.model")  # where `t0jax train` keeps it
  hf = checkpoints.save_hf_checkpoint(params, CFG, root / "hf", vocab_path=DEMO_VOCAB)
  named = {
    "model_dir": run,
    "checkpoints_dir": run / "checkpoints",
    "step_dir": run / "checkpoints" / str(STEP),
    "hf_dir": hf,
  }
  return {k: str(v) for k, v in named.items()}, params


@pytest.fixture()
def not_a_checkpoint(tmp_path):
  (tmp_path / "notes.txt").write_text("not weights")
  return str(tmp_path)


KINDS = ["model_dir", "checkpoints_dir", "step_dir", "hf_dir"]


def _predict(capsys, path) -> list:
  rc = predict.main(
    [
      "--checkpoint",
      path,
      "--input",
      "The cat sat on the",
      "--choices",
      "mat|||hat|||moon",
      "--json",
    ]
  )
  out = capsys.readouterr()
  assert rc == 0, out.err
  return json.loads(out.out)["scores"]


def test_predict_scores_every_kind_of_path_the_same(paths, capsys):
  named, _ = paths
  scores = {kind: _predict(capsys, named[kind]) for kind in KINDS}
  for kind in KINDS[1:]:
    np.testing.assert_allclose(scores[kind], scores["model_dir"], atol=1e-4, rtol=0)


def _eval(path, out, *extra):
  return eval_cli.main(
    [
      "--checkpoint",
      path,
      "--mixture",
      TASK,
      "--output_dir",
      str(out),
      "--max_examples",
      "2",
      "--per_example",
      "--gin.NUM_DEVICES=1",
      "--gin.EVAL_BATCH_SIZE=8",
      "--gin.BUCKETS_PER_OCTAVE=1",
      "--gin.ALL_PROMPTS=False",
      *extra,
    ]
  )


def test_eval_scores_every_kind_of_path_the_same(paths, tmp_path):
  named, _ = paths
  results = {}
  for kind in KINDS:
    assert _eval(named[kind], tmp_path / kind) == 0, kind
    results[kind] = json.loads((tmp_path / kind / "results.json").read_text())
  for kind in KINDS:
    expected_step = None if kind == "hf_dir" else STEP
    assert results[kind]["checkpoint"]["step"] == expected_step, kind
    for ours, theirs in zip(
      results[kind]["examples"][TASK], results["model_dir"]["examples"][TASK]
    ):
      np.testing.assert_allclose(ours["scores"], theirs["scores"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scan_layers", [False, True])
def test_train_starts_from_every_kind_of_path(paths, kind, scan_layers):
  """INITIAL_CHECKPOINT_PATH: the same weights, in the layout the gin config asks for."""
  named, saved = paths
  cfg = CFG.replace(scan_layers=scan_layers)
  part = Partitioner(1, devices=jax.devices()[:1])
  params = trainer._load_initial_params(named[kind], cfg, part.shardings(logical_axes(cfg)))
  expected = scan_params(saved, cfg) if scan_layers else saved
  assert jax.tree.structure(params) == jax.tree.structure(expected)
  for ours, theirs in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(ours), theirs)
  assert trainer.initial_checkpoint_step(named[kind]) == (None if kind == "hf_dir" else STEP)


def test_train_refuses_a_checkpoint_of_another_shape(paths):
  named, _ = paths
  with pytest.raises(
    checkpoints.CheckpointError,
    match=r"INITIAL_CHECKPOINT_PATH .*another model shape.*d_model: checkpoint "
    r"32, config 64",
  ):
    trainer._load_initial_params(named["step_dir"], CFG.replace(d_model=64), None)


def test_all_three_commands_give_the_same_error_for_a_folder_that_is_no_checkpoint(
  not_a_checkpoint, capsys, tmp_path
):
  assert predict.main(["--checkpoint", not_a_checkpoint, "--input", "x"]) == 2
  predict_err = capsys.readouterr().err
  assert _eval(not_a_checkpoint, tmp_path / "out") == 2
  eval_err = capsys.readouterr().err
  with pytest.raises(checkpoints.CheckpointError) as train_err:
    trainer._load_initial_params(not_a_checkpoint, CFG, None)
  for flag, err in (
    ("--checkpoint", predict_err),
    ("--checkpoint", eval_err),
    ("INITIAL_CHECKPOINT_PATH", str(train_err.value)),
  ):
    assert f"{flag} {not_a_checkpoint}: {NOT_A_CHECKPOINT}" in err
    assert "notes.txt" in err and "Traceback" not in err  # what the folder holds instead
  assert "does not exist" in str(
    pytest.raises(
      checkpoints.CheckpointError,
      checkpoints.read_config,
      os.path.join(not_a_checkpoint, "missing"),
    ).value
  )

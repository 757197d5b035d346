"""`t0jax eval` end to end on the demo mixture, both checkpoint formats, and its bad inputs.

A tiny random model over the demo vocabulary (896 ids) is saved as a t0jax (Orbax) checkpoint
and as a Hugging Face directory in a temp dir; nothing downloads.
"""

import json
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax
import numpy as np
import pytest

from small_models import DEMO_TINY
from t0jax.cli import eval as eval_cli
from t0jax.evaluate import data as eval_data
from t0jax.evaluate.scorer import ChoiceScorer
from t0jax.model import init_params

CFG = DEMO_TINY
MIXTURE = "demo_heldout_score_eval"
# One device, one length bucket per octave and few examples: few programs to compile.
FAST = [
  "--max_examples",
  "3",
  "--gin.NUM_DEVICES=1",
  "--gin.EVAL_BATCH_SIZE=8",
  "--gin.BUCKETS_PER_OCTAVE=1",
]


def random_params(cfg, seed=0):
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  return jax.tree.map(lambda s: rng.normal(0, 0.4, s.shape).astype(np.float32), shapes)


def save_t0jax_checkpoint(params, cfg, model_dir, step=7):
  from t0jax.checkpoints.orbax import Checkpointer

  ckpt = Checkpointer(os.path.join(model_dir, "checkpoints"), async_save=False)
  ckpt.save(
    step,
    {"step": np.int32(step), "params": params},
    {"step": step},
    {"model": cfg.shape_signature(), "model_full": cfg.to_dict()},
  )
  ckpt.close()
  return model_dir


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  from t0jax.checkpoints import save_hf_checkpoint

  root = tmp_path_factory.mktemp("checkpoints")
  params = random_params(CFG)
  return {
    "t0jax": save_t0jax_checkpoint(params, CFG, str(root / "run")),
    "hf": str(save_hf_checkpoint(params, CFG, root / "hf")),
    "params": params,
  }


def run_eval(checkpoint, out, *extra):
  return eval_cli.main(
    ["--checkpoint", checkpoint, "--mixture", MIXTURE, "--output_dir", str(out), *FAST, *extra]
  )


@pytest.fixture(scope="module")
def demo_run(checkpoints, tmp_path_factory):
  out = tmp_path_factory.mktemp("demo_eval")
  assert run_eval(checkpoints["t0jax"], out, "--per_example", "--calibrate") == 0
  return out, json.loads((out / "results.json").read_text())


def test_reports_are_written_on_the_demo_mixture(demo_run):
  out, results = demo_run
  story = results["datasets"]["demo_story"]["original_task"]
  assert story["accuracy"]["num_prompts"] == 3 and story["num_examples"] == 9
  assert set(story) >= {
    "accuracy",
    "accuracy_per_token",
    "accuracy_per_char",
    "accuracy_calibrated",
  }
  assert results["checkpoint"]["step"] == 7
  assert all(len(v) == 3 for v in results["examples"].values())
  table = (out / "results.md").read_text()
  assert "| demo_story | 3 |" in table and "## Per prompt" in table
  png = out / "accuracy_demo_heldout_score_eval.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(out / "tensorboard"))


def test_per_example_scores_equal_transformers_with_the_input_repeated(demo_run, checkpoints):
  """The whole command, on real prompted data: every choice's score equals the sum of
  transformers' token log-probabilities with the input repeated once per choice."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  _, results = demo_run
  hf = transformers.T5ForConditionalGeneration.from_pretrained(checkpoints["hf"]).eval()
  import seqio

  task_name = sorted(results["examples"])[0]
  task = seqio.get_mixture_or_task(task_name)
  data = eval_data.load_task(
    task, task_feature_lengths={"inputs": 1024, "targets": 256}, max_examples=3
  )
  for k, example in enumerate(results["examples"][task_name]):
    choices = data.choices[k]
    ids = torch.tensor([data.inputs[k]] * len(choices))
    labels = torch.zeros((len(choices), max(map(len, choices))), dtype=torch.long)
    for j, c in enumerate(choices):
      labels[j, : len(c)] = torch.tensor(c)
    with torch.no_grad():
      logits = hf(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).logits
    picked = torch.log_softmax(logits.double(), -1).gather(-1, labels[..., None])[..., 0]
    reference = (picked * (labels > 0)).sum(-1).numpy()
    np.testing.assert_allclose(example["scores"], reference, atol=1e-4, rtol=0)


def test_hugging_face_checkpoint_gives_the_same_results(demo_run, checkpoints, tmp_path):
  _, t0jax_results = demo_run
  assert run_eval(checkpoints["hf"], tmp_path, "--per_example") == 0
  results = json.loads((tmp_path / "results.json").read_text())
  for task, examples in results["examples"].items():
    for ours, theirs in zip(examples, t0jax_results["examples"][task]):
      np.testing.assert_allclose(ours["scores"], theirs["scores"], atol=1e-4, rtol=0)


def test_a_vocabulary_that_does_not_match_the_checkpoint_fails_before_any_scoring(
  tmp_path, monkeypatch, capsys
):
  cfg = CFG.replace(vocab_size=1024)
  model_dir = save_t0jax_checkpoint(random_params(cfg), cfg, str(tmp_path / "run"))

  def never(*args, **kwargs):
    raise AssertionError("scored despite the vocabulary mismatch")

  monkeypatch.setattr(ChoiceScorer, "score", never)
  assert run_eval(model_dir, tmp_path / "out") == 2
  message = capsys.readouterr().err
  assert "demo_story_" in message and "896 ids" in message and "1024 rows" in message
  assert not (tmp_path / "out" / "results.json").exists()


def test_a_path_that_is_no_checkpoint_is_named(tmp_path, capsys):
  assert run_eval(str(tmp_path), tmp_path / "out") == 2
  assert f"--checkpoint {tmp_path}" in capsys.readouterr().err


def test_gin_overrides_are_checked(checkpoints, tmp_path, capsys):
  assert run_eval(checkpoints["t0jax"], tmp_path, "--gin.EVAL_BATCH_SIZ=4") == 2
  assert "EVAL_BATCH_SIZE" in capsys.readouterr().err  # the closest macro is suggested


def test_an_unknown_mixture_fails_before_the_checkpoint_is_read(tmp_path, capsys):
  assert (
    eval_cli.main(
      [
        "--checkpoint",
        str(tmp_path),
        "--mixture",
        "demo_heldout_scor_eval",
        "--output_dir",
        str(tmp_path / "out"),
      ]
    )
    == 2
  )
  message = capsys.readouterr().err
  assert "no task or mixture named 'demo_heldout_scor_eval'" in message
  assert "demo_heldout_score_eval" in message  # the closest registered name

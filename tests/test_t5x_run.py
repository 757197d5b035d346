"""A T5X user's session end to end, with T5X's flags and macros only: train on their own SeqIO
mixture (registered by MIXTURE_OR_TASK_MODULE) from outside the checkout, fine-tune again from
that run's checkpoint with T5X's absolute TRAIN_STEPS, infer (predict and score) into T5X's
files, evaluate every checkpoint of the run, and list the user's tasks."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from t0jax import cli

ROOT = Path(__file__).resolve().parent.parent
SPM = ROOT / "tasks" / "demo" / "spiece.model"
MODULE = "t5x_user_tasks"

# Their tasks module, as a T5X user writes it: a FunctionDataSource, seqio's own preprocessors.
USER_TASKS = f'''
import json
import os

import seqio
import tensorflow as tf

# Where each process that imports this module saw SeqIO's TFDS folder and cache folders.
if os.environ.get("T5X_USER_RECORD"):
  with open(os.path.join(os.environ["T5X_USER_RECORD"], f"{{os.getpid()}}.json"), "w") as f:
    json.dump({{"cache_dirs": seqio.get_global_cache_dirs(),
               "tfds_data_dir": seqio.utils._TFDS_DATA_DIR_OVERRIDE}}, f)

VOCAB = seqio.SentencePieceVocabulary({str(SPM)!r}, extra_ids=0)
WORDS = ["good", "bad", "movie", "story", "great", "film", "plot", "actor"]
ROWS = {{
    "train": [(f"repeat: {{a}} {{b}}", f"{{a}} {{b}}") for a in WORDS for b in WORDS],
    "validation": [(f"repeat: {{a}} film", f"{{a}} film") for a in WORDS]
                  + [(f"repeat: {{a}} plot", f"{{a}} plot") for a in WORDS],
}}


def _dataset(split, shuffle_files=False, seed=None):
  inputs, targets = zip(*ROWS[split])
  return tf.data.Dataset.from_tensor_slices({{"inputs": list(inputs), "targets": list(targets)}})


seqio.TaskRegistry.add(
    "{{prefix}}_echo", source=seqio.FunctionDataSource(_dataset, splits=("train", "validation")),
    preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
    output_features={{"inputs": seqio.Feature(VOCAB, add_eos=False),
                     "targets": seqio.Feature(VOCAB, add_eos=True)}})
seqio.MixtureRegistry.add("{{prefix}}_mix", [("{{prefix}}_echo", 1.0)])
'''

# Start-up settings a test can afford; everything else comes from T5X's flags below.
QUICK_GIN = """
NUM_VIRTUAL_SHARDS = 1
LOG_PERIOD = 1
train.progress_bar = False
train.tensorboard = False
train.truncation_check_examples = 0
"""

T5X_MODEL_FLAGS = [
  "--gin.network.T5Config.emb_dim=32",
  "--gin.network.T5Config.num_heads=2",
  "--gin.network.T5Config.head_dim=8",
  "--gin.network.T5Config.mlp_dim=48",
  "--gin.network.T5Config.num_encoder_layers=1",
  "--gin.network.T5Config.num_decoder_layers=1",
  "--gin.network.T5Config.vocab_size=896",
]


def _write_module(folder: Path, name: str, prefix: str) -> None:
  (folder / f"{name}.py").write_text(USER_TASKS.replace("{prefix}", prefix))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
  """The first run, started the way a T5X user would, from a folder outside the checkout."""
  work = tmp_path_factory.mktemp("t5x_user")
  _write_module(work, MODULE, "t5x_user")
  configs = work / "configs"
  configs.mkdir()
  (configs / "quick.gin").write_text(QUICK_GIN)
  argv = [
    "train",
    "--gin_file=gin/models/t5_1_1_tiny.gin",
    "--gin_file=gin/runs/finetune.gin",
    f"--gin_search_paths={configs}",
    "--gin_file=quick.gin",
    '--gin.MODEL_DIR="run1"',
    "--gin.MIXTURE_OR_TASK_NAME=t5x_user_mix",
    f"--gin.MIXTURE_OR_TASK_MODULE={MODULE}",
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 8}",
    "--gin.TRAIN_STEPS=3",
    "--gin.BATCH_SIZE=8",
    "--gin.RANDOM_SEED=3",
    "--gin.DROPOUT_RATE=0.1",
    "--gin.LABEL_SMOOTHING=0.1",
    "--gin.Z_LOSS=0.0001",
    "--gin.LOSS_NORMALIZING_FACTOR='NUM_REAL_TARGET_TOKENS'",
    "--gin.USE_CACHED_TASKS=False",
    "--gin.EVAL_PERIOD=3",
    "--gin.EVAL_STEPS=1",
    "--gin.INITIAL_CHECKPOINT_PATH=None",
    "--gin_bindings=utils.SaveCheckpointConfig.period = 1",
    "--gin.utils.SaveCheckpointConfig.keep=None",
    "--gin.partitioning.PjitPartitioner.num_partitions=1",
    f"--tfds_data_dir={work / 'tfds'}",
    f"--seqio_additional_cache_dirs={work / 'cache'}",
  ] + T5X_MODEL_FLAGS
  (work / "seen").mkdir()
  env = {**os.environ, "PYTHONPATH": str(work), "T5X_USER_RECORD": str(work / "seen")}
  t0jax = Path(sys.executable).parent / "t0jax"
  proc = subprocess.run(
    [str(t0jax)] + argv, cwd=work, env=env, capture_output=True, text=True, timeout=1200
  )
  sys.path.insert(0, str(work))  # the later commands run in this process
  return {"work": work, "proc": proc, "argv": argv}


def test_the_t5x_command_line_trains_from_outside_the_checkout_without_stray_errors(session):
  proc = session["proc"]
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "t0jax train: done at step 3." in proc.stdout
  # Only lines about the user's run: no false errors, no TensorFlow start-up chatter.
  for stray in ("ERROR", "Traceback", "Path not found", "oneDNN", "cuda", "absl::InitializeLog"):
    assert stray not in proc.stderr, proc.stderr[-3000:]
  run = session["work"] / "run1"
  assert sorted(os.listdir(run / "checkpoints")) == ["1", "2", "3"]  # period 1, keep all
  from t0jax.train.writer import read_metrics

  records = read_metrics(str(run))
  assert [r["step"] for r in records if "loss" in r][:3] == [1, 2, 3]
  assert [r["step"] for r in records if "eval/loss" in r] == [3]  # EVAL_PERIOD=3, EVAL_STEPS=1
  from t0jax import checkpoints

  info = checkpoints.read_config(str(run))
  assert (
    info.cfg.d_model,
    info.cfg.d_ff,
    info.cfg.num_layers,
    info.cfg.vocab_size,
    info.cfg.dropout_rate,
  ) == (32, 48, 1, 896, 0.1)


def test_seqio_flags_reach_the_training_process_and_its_data_process(session):
  seen = [json.loads(p.read_text()) for p in (session["work"] / "seen").iterdir()]
  assert len(seen) == 2  # the command imported the module, and so did its data process
  for record in seen:
    assert record == {
      "cache_dirs": [str(session["work"] / "cache")],
      "tfds_data_dir": str(session["work"] / "tfds"),
    }


def test_train_steps_is_absolute_from_a_checkpoint_with_a_step(session, monkeypatch, capsys):
  work = session["work"]
  monkeypatch.chdir(work)
  argv = [
    a
    for a in session["argv"]
    if not a.startswith(
      ("--gin.MODEL_DIR", "--gin.TRAIN_STEPS", "--gin.INITIAL_CHECKPOINT_PATH", "--gin.EVAL_PERIOD")
    )
  ]
  code = cli.main(
    argv + ['--gin.MODEL_DIR="run2"', '--gin.INITIAL_CHECKPOINT_PATH="run1"', "--gin.TRAIN_STEPS=5"]
  )
  printed = capsys.readouterr()
  assert code == 0 and "done at step 5" in printed.out, printed.err
  from t0jax.train.writer import read_metrics

  steps = [r["step"] for r in read_metrics(str(work / "run2")) if "loss" in r]
  assert steps == [4, 5]  # 3 (the checkpoint's step) + 2 fine-tuning steps
  assert os.path.isdir(work / "run2" / "checkpoints" / "5")


def _lines(path: Path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_infer_writes_t5x_files_that_read_back(session, monkeypatch, capsys):
  work = session["work"]
  monkeypatch.chdir(work)
  for mode in ("predict", "score"):
    code = cli.main(
      [
        "infer",
        "--gin.MIXTURE_OR_TASK_NAME=t5x_user_mix",
        f"--gin.MIXTURE_OR_TASK_MODULE={MODULE}",
        '--gin.CHECKPOINT_PATH="run1"',
        f'--gin.INFER_OUTPUT_DIR="{work / "infer"}"',
        f"--mode={mode}",
        "--gin.BATCH_SIZE=4",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}",
      ]
    )
    assert code == 0, capsys.readouterr().err
  assert sorted(os.listdir(work / "infer")) == [
    "t5x_user_echo-predict.jsonl-00000-of-00001",
    "t5x_user_echo-score.jsonl-00000-of-00001",
  ]
  import importlib

  rows = importlib.import_module(MODULE).ROWS["validation"]
  predicted = _lines(work / "infer" / "t5x_user_echo-predict.jsonl-00000-of-00001")
  scored = _lines(work / "infer" / "t5x_user_echo-score.jsonl-00000-of-00001")
  for lines in (predicted, scored):
    assert [
      (l["inputs"]["inputs_pretokenized"], l["inputs"]["targets_pretokenized"]) for l in lines
    ] == rows
  assert all(
    isinstance(l["prediction"], str) and set(l) == {"inputs", "prediction"} for l in predicted
  )
  assert all(set(l) == {"inputs", "score"} for l in scored)
  # A score is the targets' summed log-probability (EOS included) given the inputs.
  expected = _log_likelihoods(work / "run1", rows)
  np.testing.assert_allclose([l["score"] for l in scored], expected, rtol=1e-4, atol=1e-4)
  assert all(math.isfinite(s) and s < 0 for s in expected)


def _log_likelihoods(run: Path, rows):
  import jax
  import jax.numpy as jnp
  import sentencepiece as spm
  from t0jax import checkpoints
  from t0jax.model import Transformer

  cfg, params, _ = checkpoints.load(str(run))
  sp = spm.SentencePieceProcessor(model_file=str(SPM))
  model = Transformer(cfg.replace(dropout_rate=0.0))
  out = []
  for text, target in rows:
    enc = np.array([sp.encode(text)], np.int32)
    tgt = np.array([sp.encode(target) + [1]], np.int32)
    dec_in = np.concatenate([np.zeros((1, 1), np.int32), tgt[:, :-1]], axis=1)
    logits = model.apply({"params": params}, enc, dec_in, tgt)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    out.append(float(jnp.take_along_axis(logp, tgt[..., None], -1).sum()))
  return out


def test_eval_of_every_checkpoint_writes_a_report_per_step_and_the_curve(
  session, monkeypatch, capsys
):
  work = session["work"]
  monkeypatch.chdir(work)
  out_dir = work / "eval"
  code = cli.main(
    [
      "eval",
      "--checkpoint",
      "run1",
      "--checkpoint_steps",
      "all",
      "--mixture",
      "demo_heldout_score_eval",
      "--output_dir",
      str(out_dir),
      "--max_examples",
      "2",
      "--gin.NUM_DEVICES=1",
      "--gin.BUCKETS_PER_OCTAVE=1",
      "--gin.ALL_PROMPTS=False",
    ]
  )
  printed = capsys.readouterr()
  assert code == 0, printed.err
  curve = json.loads((out_dir / "curve.json").read_text())
  assert curve["steps"] == [1, 2, 3]
  for step in (1, 2, 3):
    results = json.loads((out_dir / f"step_{step}" / "results.json").read_text())
    assert results["checkpoint"]["step"] == step
    for name, dataset in results["datasets"].items():
      assert curve["median_accuracy"][name][str(step)] == pytest.approx(
        dataset["original_task"]["accuracy"]["median"]
      )
  table = (out_dir / "curve.md").read_text()
  assert [
    line.split("|")[1].strip()
    for line in table.splitlines()
    if line.startswith("| ") and line.split("|")[1].strip().isdigit()
  ] == ["1", "2", "3"]
  assert (out_dir / "curve.png").stat().st_size > 0
  assert "Best step" in printed.out


def test_checkpoint_steps_name_the_steps_a_run_has(session, monkeypatch, capsys):
  monkeypatch.chdir(session["work"])
  code = cli.main(
    [
      "eval",
      "--checkpoint",
      "run1",
      "--checkpoint_steps",
      "2,9",
      "--mixture",
      "demo_heldout_score_eval",
      "--output_dir",
      "ev2",
    ]
  )
  err = capsys.readouterr().err
  assert code == 2 and err.strip().endswith("no checkpoint at step(s) 9; the run has 1, 2, 3.")


def test_tasks_lists_and_shows_a_users_own_tasks(tmp_path, monkeypatch, capsys):
  _write_module(tmp_path, "t5x_listed_tasks", "t5x_listed")
  monkeypatch.syspath_prepend(str(tmp_path))
  assert cli.main(["tasks", "--module", "t5x_listed_tasks"]) == 0
  out = capsys.readouterr().out
  assert "1 mixture(s), 1 task(s)" in out
  assert "mixture t5x_listed_mix: 1 task(s)" in out and "task    t5x_listed_echo" in out
  assert cli.main(["tasks", "--module", "t5x_listed_tasks", "t5x_listed_echo"]) == 0
  out = capsys.readouterr().out
  assert "split     validation" in out and "split     train" in out
  assert "mixtures  t5x_listed_mix" in out
  assert (
    cli.main(["tasks", "show", "t5x_listed_echo", "--module", "t5x_listed_tasks", "-n", "2"]) == 0
  )
  out = capsys.readouterr().out
  assert "repeat: good film" in out and "repeat: bad film" in out and "--- example 2" in out

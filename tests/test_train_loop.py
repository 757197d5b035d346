"""The trainer: sharded runs equal single-device runs, checkpoints move between meshes, resumed
runs equal uninterrupted ones, and bad configurations fail early with clear errors."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import t0jax.catalog  # noqa: F401  (registers the demo tasks)
from t0jax.cli import gin_flags as gin_utils
from t0jax.train import optim, trainer
from t0jax.checkpoints.orbax import IncompatibleCheckpointError, load_params
from t0jax.train.writer import read_metrics
from t0jax.model import T5Config

ROOT = Path(__file__).resolve().parent.parent
SMALL_GIN = str(ROOT / "tests" / "data" / "train_small.gin")
CFG = T5Config(vocab_size=896, d_model=32, num_heads=4, head_dim=8, d_ff=64, num_layers=2)
KW = dict(
  mixture_or_task_name="demo_reviews_tone",
  task_feature_lengths={"inputs": 96, "targets": 8},
  batch_size=8,
  model_config=CFG,
  log_period=1,
  keep_checkpoints=None,
  progress_bar=False,
  tensorboard=False,
  truncation_check_examples=0,
  async_checkpointing=False,
)


def _train(model_dir, **kw):
  gin.clear_config()
  return trainer.train(model_dir=str(model_dir), **{**KW, **kw})


def _losses(model_dir):
  return {r["step"]: r["loss"] for r in read_metrics(model_dir)}


def _assert_same_params(a, b, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """One-device and 8x1-mesh runs of the same 4 steps, checkpointing every 2."""
  base = tmp_path_factory.mktemp("runs")
  one = _train(base / "one", train_steps=4, checkpoint_period=2, num_devices=1)
  eight = _train(base / "eight", train_steps=4, checkpoint_period=2)
  return base, one, eight


def test_eight_device_training_equals_one_device_training(runs):
  base, one, eight = runs
  assert sorted(one["losses"]) == [1, 2, 3, 4]
  np.testing.assert_allclose(
    [eight["losses"][s] for s in range(1, 5)], [one["losses"][s] for s in range(1, 5)], rtol=1e-5
  )
  _assert_same_params(eight["params"], one["params"], atol=1e-5)
  assert [r["step"] for r in read_metrics(base / "eight")] == [1, 2, 3, 4]


def test_checkpoint_from_8x1_mesh_restores_onto_4x2_and_continues_identically(runs, tmp_path):
  base, _, eight = runs
  moved = tmp_path / "moved"
  shutil.copytree(base / "eight", moved)
  shutil.rmtree(moved / "checkpoints" / "4")  # continue from step 2 on another mesh shape
  resumed = _train(moved, train_steps=4, checkpoint_period=2, num_partitions=2)
  assert sorted(resumed["losses"]) == [3, 4]
  np.testing.assert_allclose(
    [resumed["losses"][3], resumed["losses"][4]],
    [eight["losses"][3], eight["losses"][4]],
    rtol=1e-5,
  )
  _assert_same_params(resumed["params"], eight["params"], atol=1e-5)
  # metrics.jsonl still describes one run: steps 1..4 once each.
  assert [r["step"] for r in read_metrics(moved)] == [1, 2, 3, 4]


def test_resuming_with_another_model_shape_fails_and_overwrites_nothing(runs, tmp_path):
  base, _, _ = runs
  other = tmp_path / "other"
  shutil.copytree(base / "eight", other)
  before = sorted(os.listdir(other / "checkpoints"))
  with pytest.raises(IncompatibleCheckpointError, match=r"d_model: checkpoint 32, now 64"):
    _train(other, train_steps=6, model_config=CFG.replace(d_model=64))
  assert sorted(os.listdir(other / "checkpoints")) == before


def test_gradient_accumulation_equals_the_full_batch_step(runs, tmp_path):
  _, one, _ = runs
  accum = _train(
    tmp_path / "accum", train_steps=2, checkpoint_period=100, num_devices=1, num_microbatches=2
  )
  np.testing.assert_allclose(
    [accum["losses"][1], accum["losses"][2]], [one["losses"][1], one["losses"][2]], rtol=1e-5
  )


def test_non_finite_update_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
  # A learning rate that turns NaN from the 4th update on: step 4's update is the first bad one.
  bad = lambda step: jnp.where(step >= 3, jnp.nan, 1e-3)
  with pytest.raises(
    trainer.NonFiniteLossError,
    match=r"at step 4\b.*last good checkpoint is "
    r"step 2",
  ):
    _train(tmp_path, train_steps=6, checkpoint_period=2, num_devices=1, learning_rate_schedule=bad)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  _, params = load_params(str(tmp_path))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_unwritable_model_dir_fails_before_training(tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  if os.access(locked, os.W_OK):  # running as root: permissions are not enforced
    blocker = tmp_path / "file"
    blocker.write_text("x")
    locked = blocker / "sub"  # a path under a regular file can never be created
  with pytest.raises(PermissionError, match="is not writable.*Nothing was trained"):
    _train(locked, train_steps=1)


def test_unknown_gin_parameter_is_named_with_closest_valid_names():
  gin.clear_config()
  with pytest.raises(gin_utils.GinConfigError, match=r"train\.batch_sise.*Closest: batch_size"):
    gin_utils.parse([SMALL_GIN], ["train.batch_sise=4"], finalize=False)


def test_unknown_gin_macro_is_named_with_closest_macros():
  gin.clear_config()
  with pytest.raises(gin_utils.GinConfigError, match=r"TRAIN_STPES.*Closest: TRAIN_STEPS"):
    gin_utils.parse([SMALL_GIN], ["TRAIN_STPES=4"], finalize=False)


def test_unknown_gin_configurable_is_named():
  gin.clear_config()
  with pytest.raises(gin_utils.GinConfigError, match=r"Unknown gin configurable 'trian'"):
    gin_utils.parse([SMALL_GIN], ["trian.batch_size=4"], finalize=False)


def test_truncating_feature_lengths_are_counted_and_warned_with_the_task_name(caplog):
  from t0jax.train.input_pipeline import check_truncation

  report = check_truncation("demo_reviews_tone", {"inputs": 16, "targets": 8}, max_examples=20)
  assert report["demo_reviews_tone"]["inputs_truncated"] == 20
  assert "demo_reviews_tone" in caplog.text and "longer than 16 tokens" in caplog.text


def _cli(model_dir, *extra):
  env = {**os.environ, "PYTHONUNBUFFERED": "1"}
  return subprocess.Popen(
    [
      sys.executable,
      "-m",
      "t0jax.train",
      f"--gin_file={SMALL_GIN}",
      f"--model_dir={model_dir}",
      *extra,
    ],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _wait_for_step(model_dir, step, proc, timeout=240):
  deadline = time.time() + timeout
  path = Path(model_dir) / "metrics.jsonl"
  while time.time() < deadline:
    if path.exists() and any(
      json.loads(line)["step"] >= step for line in path.read_text().splitlines() if line.strip()
    ):
      return
    if proc.poll() is not None:
      raise AssertionError(f"training exited early:\n{proc.stdout.read()}")
    time.sleep(0.05)
  raise AssertionError("training did not reach step %d" % step)


def test_sigkill_then_restart_equals_the_uninterrupted_run(tmp_path):
  ref = _cli(tmp_path / "ref")
  out, _ = ref.communicate(timeout=300)
  assert ref.returncode == 0, out
  killed = _cli(tmp_path / "run")
  _wait_for_step(tmp_path / "run", 3, killed)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert _losses(tmp_path / "run").keys() < set(range(1, 7))  # it really stopped early
  again = _cli(tmp_path / "run")
  out, _ = again.communicate(timeout=300)
  assert again.returncode == 0, out
  ref_losses, run_losses = _losses(tmp_path / "ref"), _losses(tmp_path / "run")
  assert sorted(run_losses) == list(range(1, 7))
  np.testing.assert_allclose(
    [run_losses[s] for s in range(1, 7)], [ref_losses[s] for s in range(1, 7)], rtol=1e-6
  )
  _assert_same_params(load_params(str(tmp_path / "run"))[1], load_params(str(tmp_path / "ref"))[1])


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  proc = _cli(tmp_path, "--gin.TRAIN_STEPS=500", "--gin.CHECKPOINT_PERIOD=1000")
  _wait_for_step(tmp_path, 3, proc)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "stopped by SIGTERM" in out
  steps = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
  assert len(steps) == 1 and 3 <= steps[0] < 500


def test_predict_reads_a_t0jax_training_checkpoint(runs, capsys):
  from t0jax.cli import main

  base, _, eight = runs
  assert (base / "eight" / "spiece.model").is_file()  # the trainer keeps the vocabulary
  assert (
    main(
      [
        "predict",
        "--checkpoint",
        str(base / "eight"),
        "--input",
        "A delightful, warm film.",
        "--choices",
        "positive|||negative",
        "--json",
      ]
    )
    == 0
  )
  out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert out["choices"] == ["positive", "negative"] and len(out["scores"]) == 2
  assert out["prediction"] == out["choices"][int(np.argmax(out["scores"]))]


def test_periodic_evaluation_scores_a_score_eval_mixture_by_rank_classification(tmp_path):
  out = _train(
    tmp_path,
    train_steps=2,
    checkpoint_period=100,
    num_devices=1,
    eval_period=2,
    eval_mixture_or_task_name="demo_heldout_score_eval",
    eval_max_examples=4,
  )
  assert out["step"] == 2
  evals = [r for r in read_metrics(tmp_path) if any(k.startswith("eval/") for k in r)]
  assert len(evals) == 1 and evals[0]["step"] == 2
  accs = {k: v for k, v in evals[0].items() if k.endswith("/median_accuracy")}
  assert accs and all(0.0 <= v <= 100.0 for v in accs.values())  # percent, as T0 reports


# ---------------------------------------------------------------------------------------------
# Training semantics T5X users expect (issue 13): step counting, settings, loss options.


def _bad(model_dir, **kw):
  with pytest.raises(ValueError) as caught:
    _train(model_dir, **{"train_steps": 2, **kw})
  assert not Path(model_dir).exists()  # refused before anything was written or compiled
  return str(caught.value)


@pytest.mark.parametrize(
  "kw,macro",
  [
    ({"train_steps": -5}, "TRAIN_STEPS"),
    ({"train_steps": 0}, "TRAIN_STEPS"),
    ({"batch_size": 0}, "BATCH_SIZE"),
    ({"checkpoint_period": 0}, "CHECKPOINT_PERIOD"),
    ({"log_period": -1}, "LOG_PERIOD"),
    ({"eval_period": -1}, "EVAL_PERIOD"),
    ({"eval_steps": 0}, "EVAL_STEPS"),
    ({"train_steps_relative": 0}, "TRAIN_STEPS_RELATIVE"),
    ({"num_microbatches": 0}, "NUM_MICROBATCHES"),
    ({"label_smoothing": 1.0}, "LABEL_SMOOTHING"),
    ({"loss_normalizing_factor": "tokens"}, "LOSS_NORMALIZING_FACTOR"),
    ({"eval_mode": "bleu"}, "train.eval_mode"),
  ],
)
def test_non_positive_counts_and_bad_values_fail_before_compiling_naming_the_macro(
  tmp_path, kw, macro
):
  assert _bad(tmp_path / "run", **kw).startswith(macro)


def test_huge_train_steps_without_a_checkpoint_step_stop_with_the_t5x_explanation(tmp_path):
  message = _bad(tmp_path / "run", train_steps=1112200)
  assert "TRAIN_STEPS=1112200" in message and "TRAIN_STEPS_RELATIVE" in message
  assert "12200" in message  # what to write instead


def test_settings_group_the_gin_parameters_and_keep_eval_batches_as_an_alias():
  from t0jax.train.settings import RunSettings

  args = dict(
    model_dir="m",
    mixture_or_task_name="mix",
    task_feature_lengths={"inputs": 8},
    train_steps=10,
    train_steps_relative=None,
    batch_size=8,
    num_microbatches=1,
    seed=3,
    pack=True,
    num_virtual_shards=8,
    use_cached_tasks=True,
    data_process=False,
    truncation_check_examples=0,
    z_loss=0.0,
    label_smoothing=0.1,
    loss_normalizing_factor="NUM_REAL_TARGET_TOKENS",
    checkpoint_period=5,
    keep_checkpoints=None,
    async_checkpointing=False,
    initial_checkpoint_path=None,
    eval_period=5,
    eval_mixture_or_task_name=None,
    eval_steps=None,
    eval_batches=7,
    eval_max_examples=None,
    eval_mode="auto",
    log_period=1,
    tensorboard=False,
    progress_bar=False,
  )
  s = RunSettings.from_train_args(args)
  assert (
    s.eval.steps,
    s.data.use_cached_tasks,
    s.loss.label_smoothing,
    s.checkpoint.period,
    s.log.period,
    s.data.seed,
  ) == (7, True, 0.1, 5, 1, 3)
  assert s.loss.loss_normalizing_factor == "num_real_target_tokens"
  assert RunSettings.from_train_args({**args, "eval_steps": 2}).eval.steps == 2


def test_target_step_follows_t5x_absolute_and_relative_counting():
  from t0jax.train.settings import target_step

  assert target_step(1112200, None, 1100000) == 1112200  # T0: 12,200 fine-tuning steps
  assert target_step(None, 12200, 1100000) == 1112200
  assert target_step(12200, None, None) == 12200
  assert target_step(5, 3, None) == 3  # TRAIN_STEPS_RELATIVE wins, as in T5X
  with pytest.raises(ValueError, match=r"not past the initial checkpoint's step 1100000"):
    target_step(12200, None, 1100000)


def test_from_a_checkpoint_with_a_step_train_steps_is_absolute_and_resumes_exactly(
  runs, tmp_path, caplog
):
  base, one, _ = runs  # `one` ends at step 4
  init = str(base / "one")
  caplog.set_level("INFO", logger="t0jax.train.trainer")
  full = _train(
    tmp_path / "abs",
    train_steps=6,
    checkpoint_period=5,
    num_devices=1,
    initial_checkpoint_path=init,
  )
  assert full["step"] == 6 and sorted(full["losses"]) == [5, 6]
  assert "2 fine-tuning steps" in caplog.text
  records = read_metrics(tmp_path / "abs")
  assert [r["step"] for r in records] == [5, 6] and records[-1]["examples_seen"] == 2 * 8
  assert sorted(os.listdir(tmp_path / "abs" / "checkpoints")) == ["5", "6"]
  # Preempted after step 5: the resumed run continues the data stream where it stopped.
  shutil.rmtree(tmp_path / "abs" / "checkpoints" / "6")
  resumed = _train(
    tmp_path / "abs",
    train_steps=6,
    checkpoint_period=5,
    num_devices=1,
    initial_checkpoint_path=init,
  )
  np.testing.assert_allclose(resumed["losses"][6], full["losses"][6], rtol=1e-6)
  _assert_same_params(resumed["params"], full["params"])
  # TRAIN_STEPS_RELATIVE counts from the checkpoint's step: the same run.
  relative = _train(
    tmp_path / "rel",
    train_steps_relative=2,
    checkpoint_period=100,
    num_devices=1,
    initial_checkpoint_path=init,
  )
  assert relative["step"] == 6
  np.testing.assert_allclose(
    [relative["losses"][5], relative["losses"][6]],
    [full["losses"][5], full["losses"][6]],
    rtol=1e-6,
  )


def _step_inputs(label_smoothing=0.0, z_loss=0.0, factor="NUM_REAL_TARGET_TOKENS"):
  from t0jax.model import init_params
  from t0jax.model.losses import shift_right
  from t0jax.train.state import TrainState
  import optax

  cfg = CFG.replace(vocab_size=64)
  rng = np.random.default_rng(0)
  targets = rng.integers(2, 64, (4, 6)).astype(np.int32)
  targets[1, 3:] = 0
  batch = {
    "encoder_input_tokens": rng.integers(2, 64, (4, 10)).astype(np.int32),
    "decoder_target_tokens": targets,
    "decoder_input_tokens": np.asarray(shift_right(targets)),
  }
  params = init_params(cfg, jax.random.key(0))
  tx = optax.sgd(1.0)
  step = trainer.make_train_step(
    cfg, tx, optim.constant_schedule(), 1, z_loss, factor, 0, label_smoothing
  )
  state = TrainState(jnp.int32(0), params, tx.init(params))
  return cfg, params, batch, step, state


def test_train_step_normalises_the_summed_loss_once_as_loss_normalizing_factor_says():
  _, params, batch, step, state = _step_inputs()
  tokens = float((batch["decoder_target_tokens"] > 0).sum())
  deltas = {}
  for factor in ("NUM_REAL_TARGET_TOKENS", "num_real_target_tokens", tokens, None):
    *_, step, state = _step_inputs(factor=factor)
    new, _ = jax.jit(step)(state, batch)
    deltas[factor] = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), new.params, params)
  for factor in ("num_real_target_tokens", tokens):
    _assert_same_params(deltas[factor], deltas["NUM_REAL_TARGET_TOKENS"], atol=1e-6)
  # None: the plain sum (Mesh TF), `tokens` times the per-token step with SGD.
  summed = jax.tree.map(lambda d: d / tokens, deltas[None])
  _assert_same_params(summed, deltas["NUM_REAL_TARGET_TOKENS"], atol=1e-6)


def test_train_step_applies_label_smoothing_and_z_loss():
  from t0jax.model import EncoderDecoderModel

  cfg, params, batch, step, state = _step_inputs(label_smoothing=0.1, z_loss=1e-4)
  _, metrics = jax.jit(step)(state, batch)
  total, aux = EncoderDecoderModel.from_config(cfg).loss_sums(
    params, batch, z_loss=1e-4, label_smoothing=0.1
  )
  np.testing.assert_allclose(float(metrics["loss"]), float(total) / float(aux["weight"]), rtol=1e-5)
  *_, plain_step, _ = _step_inputs()
  _, plain = jax.jit(plain_step)(state, batch)
  assert abs(float(metrics["loss"]) - float(plain["loss"])) > 1e-3


def test_eval_mode_auto_is_rank_only_when_every_task_has_answer_choices():
  assert trainer.all_tasks_have_choices("demo_heldout_score_eval")
  assert not trainer.all_tasks_have_choices("demo_reviews_tone")


def test_use_cached_tasks_reads_the_seqio_cache(tmp_path):
  # No cache was built for the demo task: reading it live would succeed, the cache cannot.
  with pytest.raises(Exception, match=r"demo_reviews_tone.*(?i:cache)"):
    _train(tmp_path, train_steps=1, num_devices=1, use_cached_tasks=True, data_process=False)

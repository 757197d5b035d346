"""bench/train_step.py: the t0jax-vs-PyTorch training-step benchmark measures like for like.

The end-to-end tests run the real command on a tiny model (both frameworks, each in its own
subprocess); the rest check the pieces that make the comparison fair: the shared batch, the loss
check, thread pinning, peak-memory accounting and flag validation.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _common, train_step  # noqa: E402

SCRIPT = ROOT / "bench" / "train_step.py"
TINY = [
  "--size",
  "tiny",
  "--batch",
  "2",
  "--input_len",
  "16",
  "--target_len",
  "8",
  "--steps",
  "2",
  "--warmup",
  "0",
  "--threads",
  "1",
]


def run_bench(*args, tmp_path):
  out = tmp_path / "figures.json"
  proc = subprocess.run(
    [sys.executable, str(SCRIPT), *args, "--json", str(out)],
    capture_output=True,
    text=True,
    cwd=tmp_path,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return proc.stdout.strip().splitlines(), json.loads(out.read_text())


@pytest.mark.slow  # two full benchmark runs (minutes on 2 cores): run with --runslow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_both_frameworks_train_the_same_model_and_the_last_line_is_the_ratio(tmp_path, dtype):
  lines, figures = run_bench(*TINY, "--dtype", dtype, tmp_path=tmp_path)
  assert re.fullmatch(r"ratio t0jax/pytorch tokens/s: \d+\.\d\dx", lines[-1])
  jax_side, torch_side = figures["t0jax"], figures["pytorch"]
  # Same weights and batch: the first step's cross entropy agrees, so the work is the same.
  assert figures["loss_check"]["ok"] is True
  assert figures["loss_check"]["relative_difference"] <= train_step.LOSS_TOLERANCE[dtype]
  assert jax_side["num_params"] == torch_side["num_params"]
  for side in (jax_side, torch_side):
    assert len(side["times_s"]) == 2 and side["median_s"] > 0
    assert side["tokens_per_s"] == pytest.approx(2 * (16 + 8) / side["median_s"])
    assert side["peak_rss_steps_mib"] > 100
    assert side["peak_rss_process_mib"] >= side["peak_rss_steps_mib"]
    assert len(side["cpus"]) == 1  # --threads 1: pinned to one CPU
  assert figures["ratio_tokens_per_s"] == pytest.approx(
    jax_side["tokens_per_s"] / torch_side["tokens_per_s"]
  )
  assert f"{figures['ratio_tokens_per_s']:.2f}x" in lines[-1]


def test_matmul_mode_reports_both_frameworks_gflops(tmp_path):
  lines, figures = run_bench(
    "--matmul", "--matmul_shape", "256,64,128", "--steps", "3", "--threads", "1", tmp_path=tmp_path
  )
  assert re.fullmatch(r"ratio t0jax/pytorch GFLOP/s: \d+\.\d\dx", lines[-1])
  flops = 2 * 256 * 64 * 128
  for side in (figures["t0jax"], figures["pytorch"]):
    assert side["gflop_per_s"] == pytest.approx(flops / side["median_s"] / 1e9)
  assert figures["settings"]["matmul_shape"] == [256, 64, 128]


def test_fixed_batch_is_deterministic_unpadded_and_shifted_right():
  spec = _common.Spec(mode="train", config={}, batch=3, input_len=7, target_len=5, seed=4)
  enc, dec_in, targets = _common.fixed_batch(spec, vocab_size=50)
  again = _common.fixed_batch(spec, vocab_size=50)
  for a, b in zip((enc, dec_in, targets), again):
    np.testing.assert_array_equal(a, b)
  assert enc.shape == (3, 7) and targets.shape == (3, 5)
  assert enc.min() >= 2 and targets.min() >= 2 and max(enc.max(), targets.max()) < 50
  np.testing.assert_array_equal(dec_in[:, 0], 0)
  np.testing.assert_array_equal(dec_in[:, 1:], targets[:, :-1])


def _sides(a, b):
  return [{"first_loss": a}, {"first_loss": b}]


def test_loss_check_fails_when_the_two_sides_disagree():
  spec = _common.Spec(mode="train", config={"dropout_rate": 0.0}, weights_dir="w")
  assert train_step.loss_check(spec, _sides(10.0, 10.0 + 5e-4))["ok"] is True
  failed = train_step.loss_check(spec, _sides(10.0, 10.5))
  assert failed["ok"] is False and "FAILED" in failed["verdict"]


def test_loss_check_is_skipped_when_weights_or_dropout_differ():
  no_weights = _common.Spec(mode="train", config={"dropout_rate": 0.0})
  assert train_step.loss_check(no_weights, _sides(1.0, 9.0))["ok"] is None
  dropout = _common.Spec(mode="train", config={"dropout_rate": 0.1}, weights_dir="w")
  assert "dropout" in train_step.loss_check(dropout, _sides(1.0, 9.0))["verdict"]


def test_too_many_threads_is_refused_naming_the_flag():
  with pytest.raises(ValueError, match="--threads 999"):
    _common.limit_cpus(999)


@pytest.mark.parametrize(
  "argv,culprit",
  [
    (["--size", "huge"], "--size"),
    (["--batch", "0"], "--batch"),
    (["--matmul_shape", "8,8"], "--matmul_shape"),
  ],
)
def test_bad_flags_are_refused_naming_the_flag(argv, culprit):
  with pytest.raises(SystemExit, match=culprit):
    train_step.build_spec(train_step.parse_args(argv))


def test_peak_memory_since_reset_excludes_earlier_peaks():
  block = np.ones(256 * 2**20, np.uint8)  # 256 MiB, touched
  del block
  _common.reset_peak_rss()
  peaks = _common.peak_rss_mib()
  assert peaks["peak_rss_process_mib"] - peaks["peak_rss_steps_mib"] > 150


def test_cpu_monitor_sees_this_process_working():
  with _common.CpuMonitor(sorted(os.sched_getaffinity(0))) as cpu:
    x = np.random.default_rng(0).standard_normal((400, 400))
    for _ in range(30):
      x = np.tanh(x @ x)
  assert cpu.result["own_cores"] > 0.2
  assert cpu.result["other_cores"] >= 0.0

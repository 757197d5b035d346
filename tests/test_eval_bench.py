"""bench/eval_rank.py: the data both sides score, the paired ratio, the refusal to compare sides
that disagree, and (slow) the whole benchmark on a tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import eval_rank  # noqa: E402


def test_tasks_have_4_and_2_choices_of_inputs_about_200_tokens():
  data = eval_rank.make_data(20, 32128, seed=0)
  for name, num_choices in (("4-choice", 4), ("2-choice", 2)):
    rows = data[name]
    assert len(rows) == 20
    assert all(150 <= len(r["inputs"]) <= 250 for r in rows)
    assert all(len(r["choices"]) == num_choices for r in rows)
    assert all(
      c[-1] == 1 and 2 <= len(c) <= 9 and min(c[:-1] or [2]) >= 2
      for r in rows
      for c in r["choices"]
    )
    assert all(0 <= r["answer_idx"] < num_choices for r in rows)
  assert eval_rank.make_data(20, 32128, seed=0) == data  # both sides read the same data


def pair(ours, theirs, scores=((-1.0, -2.0),), other_scores=None):
  return {
    "t0jax": {"wall_s": ours, "cpu_s": ours, "scores": [list(s) for s in scores]},
    "tzero": {
      "wall_s": theirs,
      "cpu_s": theirs,
      "scores": [list(s) for s in (other_scores or scores)],
    },
  }


def test_the_last_line_is_the_median_paired_ratio_of_total_time(capsys):
  results = {
    "4-choice": {
      "cold_s": 1.0,
      "examples": 8,
      "pairs": [pair(1.0, 4.0), pair(2.0, 4.0), pair(1.0, 5.0)],
    },
    "2-choice": {
      "cold_s": 1.0,
      "examples": 8,
      "pairs": [pair(1.0, 2.0), pair(1.0, 2.0), pair(1.0, 3.0)],
    },
  }
  args = SimpleNamespace(
    examples=8, threads=1, cpu_devices=None, batch_size=4, repeats=3, json=None
  )
  eval_rank.report(results, {"size": "tiny", "d_model": 8, "layers": 1, "vocab_size": 64}, args)
  lines = capsys.readouterr().out.strip().splitlines()
  # Pairs: (4+2)/(1+1) = 3, (4+2)/(2+1) = 2, (5+3)/(1+1) = 4 -> median 3.
  assert lines[-1] == "ratio t0jax/t-zero examples/s: 3.00x"
  assert results["4-choice"]["ratio"] == 4.0 and results["2-choice"]["ratio"] == 2.0


def test_sides_whose_scores_differ_are_not_compared():
  results = {
    "4-choice": {
      "cold_s": 1.0,
      "examples": 8,
      "pairs": [pair(1.0, 2.0, other_scores=((-1.0, -2.5),))],
    }
  }
  args = SimpleNamespace(
    examples=8, threads=1, cpu_devices=None, batch_size=4, repeats=1, json=None
  )
  with pytest.raises(SystemExit, match="scores differ by 0.5"):
    eval_rank.report(results, {"size": "tiny", "d_model": 8, "layers": 1, "vocab_size": 64}, args)


@pytest.mark.slow  # both frameworks in subprocesses (about a minute): run with --runslow
def test_both_sides_score_alike_and_the_last_line_is_the_ratio(tmp_path):
  out = tmp_path / "figures.json"
  proc = subprocess.run(
    [
      sys.executable,
      str(ROOT / "bench" / "eval_rank.py"),
      "--size",
      "tiny",
      "--examples",
      "4",
      "--repeats",
      "1",
      "--threads",
      "1",
      "--json",
      str(out),
    ],
    capture_output=True,
    text=True,
    timeout=900,
    env={**os.environ, "XLA_FLAGS": ""},
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
  last = proc.stdout.strip().splitlines()[-1]
  assert last.startswith("ratio t0jax/t-zero examples/s: ") and last.endswith("x")
  figures = json.loads(out.read_text())
  for name in ("4-choice", "2-choice"):
    assert figures["results"][name]["max_score_diff"] < 1e-3

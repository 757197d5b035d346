"""Evaluation figures and reports: accuracy definitions, per-dataset statistics, T0 references,
ROUGE-L, the Markdown table, TensorBoard tags. Pure Python: no model, no data."""

import math

import numpy as np
import pytest

from t0jax.evaluate import metrics, report


def arrays(*rows):
  return [np.array(r, np.float64) for r in rows]


def test_accuracy_excludes_examples_whose_target_is_not_among_the_choices():
  scores = arrays([-1.0, -2.0], [-3.0, -1.0], [-1.0, -5.0])
  figures = metrics.rank_metrics(
    scores, arrays([1, 1], [1, 1], [1, 1]), arrays([1, 1], [1, 1], [1, 1]), [0, 0, -1]
  )
  assert figures["accuracy"] == 50.0  # 1 of the 2 scorable examples, not 1 of 3
  assert (figures["num_examples"], figures["num_scored"], figures["num_target_not_in_choices"]) == (
    3,
    2,
    1,
  )


def test_per_token_and_per_character_normalisations_can_change_the_prediction():
  # Choice 0: 2 tokens, 10 characters, log-likelihood -4; choice 1: 4 tokens, 3 characters, -6.
  scores, tokens, chars = arrays([-4.0, -6.0]), arrays([2, 4]), arrays([10, 3])
  figures = metrics.rank_metrics(scores, tokens, chars, [1], unconditional=arrays([-1.0, -5.0]))
  assert figures["accuracy"] == 0.0  # sum: -4 > -6
  assert figures["accuracy_per_token"] == 100.0  # -1.5 > -2
  assert figures["accuracy_per_char"] == 0.0  # -0.4 > -2
  assert figures["accuracy_calibrated"] == 100.0  # -3 < -1


def test_ties_go_to_the_first_choice_and_empty_choice_text_counts_one_character():
  figures = metrics.rank_metrics(arrays([-2.0, -2.0]), arrays([1, 1]), arrays([0, 0]), [0])
  assert figures["accuracy"] == figures["accuracy_per_char"] == 100.0


def test_a_prompt_with_no_scorable_example_has_no_accuracy_and_is_left_out_of_statistics():
  figures = metrics.rank_metrics(arrays([-1.0]), arrays([1]), arrays([1]), [-1])
  assert math.isnan(figures["accuracy"])
  assert metrics.summary([50.0, float("nan"), 70.0]) == {
    "median": 60.0,
    "mean": 60.0,
    "min": 50.0,
    "max": 70.0,
    "num_prompts": 2,
  }


def prompt(dataset, name, accuracy, original=True, kind="rank"):
  return {
    "dataset": dataset,
    "prompt": name,
    "original_task": original,
    "kind": kind,
    "metrics": {"accuracy": accuracy, "num_examples": 10, "num_target_not_in_choices": 1},
  }


def test_datasets_report_statistics_over_original_task_prompts_and_over_all_prompts():
  prompts = {
    "a": prompt("super_glue/rte", "p1", 60.0),
    "b": prompt("super_glue/rte", "p2", 80.0),
    "c": prompt("super_glue/rte", "p3", 70.0),
    "d": prompt("super_glue/rte", "other", 10.0, original=False),
  }
  rte = metrics.aggregate(prompts)["super_glue/rte"]
  assert rte["original_task"]["accuracy"] == {
    "median": 70.0,
    "mean": 70.0,
    "min": 60.0,
    "max": 80.0,
    "num_prompts": 3,
  }
  assert rte["all_prompts"]["accuracy"]["median"] == 65.0
  assert rte["all_prompts"]["accuracy"]["min"] == 10.0
  assert rte["original_task"]["num_target_not_in_choices"] == 3
  assert rte["t0_reference_mean_accuracy"] == 81.0


def test_anli_rounds_are_averaged_beside_t0s_anli_figure():
  prompts = {
    f"{r}{k}": prompt(f"anli_{r}", f"p{k}", acc)
    for r, accs in (("r1", (40, 50)), ("r2", (30, 40)), ("r3", (35, 45)))
    for k, acc in enumerate(accs)
  }
  datasets = metrics.aggregate(prompts)
  average = datasets[metrics.ANLI_AVERAGE]
  assert average["original_task"]["accuracy"]["mean"] == pytest.approx(40.0)
  assert average["original_task"]["accuracy"]["num_prompts"] == 6
  assert average["t0_reference_mean_accuracy"] == 41.0
  assert datasets["anli_r2"]["t0_reference_mean_accuracy"] == 41.0


def test_every_t0_held_out_dataset_has_its_reference_figure():
  expected = {
    "super_glue/rte": 81.0,
    "super_glue/cb": 70.1,
    "super_glue/wsc.fixed": 61.1,
    "winogrande/winogrande_xl": 59.9,
    "super_glue/copa": 91.5,
    "hellaswag": 33.6,
    "story_cloze/2016": 92.4,
    "super_glue/wic": 56.1,
  }
  assert {k: metrics.T0_REFERENCE[k] for k in expected} == expected


def test_rouge_l_and_exact_match():
  assert metrics.rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
  # Lowercased, punctuation dropped: the LCS "the cat the mat" is 4 of the target's 6 words
  # (recall) and 4 of the prediction's 5 words (precision).
  assert metrics.rouge_l("the cat sat on the mat", "The cat, a the mat!") == pytest.approx(
    2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5)
  )
  assert metrics.rouge_l("abc", "xyz") == 0.0
  figures = metrics.generation_metrics(["Paris ", "blue"], ["Paris", "red"])
  assert figures["exact_match"] == 50.0 and figures["rougeL"] == 50.0


def sample_results(collection="promptsource"):
  prompts = {
    "t1": prompt("super_glue/cb", "p1", 55.0),
    "t2": prompt("super_glue/cb", "p2", 65.0),
    "t3": prompt("demo_story", "p1", float("nan")),
  }
  for p in prompts.values():
    p["prompt_collection"] = collection
  return {
    "mixture_or_task": "my_mix",
    "split": "validation",
    "prompts": prompts,
    "datasets": metrics.aggregate(prompts),
    "timing": {"num_examples": 30, "seconds": 1.0},
  }


def test_markdown_table_puts_t0_reference_figures_beside_held_out_datasets():
  text = report.markdown(sample_results())
  row = next(line for line in text.splitlines() if line.startswith("| super_glue/cb |"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  # dataset, prompts, median, mean, min, max, T0 (mean), ...
  assert cells[1:7] == ["2", "60.0", "60.0", "55.0", "65.0", "70.1"]
  story = next(line for line in text.splitlines() if line.startswith("| demo_story |"))
  assert "| - |" in story  # no accuracy, no reference
  assert "Prompts: T0's own prompts (promptsource)." in text


def test_t0_reference_figures_are_left_out_when_the_prompts_are_not_t0s():
  text = report.markdown(sample_results("t0jax"))
  row = next(line for line in text.splitlines() if line.startswith("| super_glue/cb |"))
  assert [c.strip() for c in row.strip("|").split("|")][6] == "-"
  assert "Prompts: t0jax's own prompts" in text and "T0 (mean) is shown only" in text


def test_json_has_no_nan_and_tensorboard_tags_are_clean(tmp_path):
  import json

  results = sample_results()
  path = report.write_json(results, str(tmp_path))
  loaded = json.loads(open(path).read())  # strict JSON: NaN became null
  assert loaded["prompts"]["t3"]["metrics"]["accuracy"] is None
  tags = report.scalars(results)
  assert tags["eval/super_glue/cb/original_task/accuracy_median"] == 60.0
  assert "eval_prompts/t1/accuracy" in tags
  assert not any(math.isnan(v) for v in tags.values())


def test_rank_accuracy_has_one_implementation_shared_with_the_task_metric(monkeypatch):
  """`t0jax eval`'s accuracy and the catalogue tasks' seqio metric are the same function
  (t0jax/data/accuracy.py), so they cannot drift apart."""
  from t0jax.data import accuracy, preprocessors

  assert metrics.rank_accuracy is accuracy.rank_accuracy
  monkeypatch.setattr(accuracy, "rank_accuracy", lambda gold, predicted: 42.0)
  assert preprocessors.rank_classification_accuracy([0], [0])["accuracy"] == 42.0


def test_rank_accuracy_leaves_out_targets_not_among_the_choices_and_checks_lengths():
  from t0jax.data.accuracy import num_not_in_choices, rank_accuracy

  assert rank_accuracy([0, 1, -1, 2], [0, 0, 1, 2]) == pytest.approx(200 / 3)
  assert num_not_in_choices([0, 1, -1, 2, -1]) == 2
  assert math.isnan(rank_accuracy([-1, -1], [0, 1])) and math.isnan(rank_accuracy([], []))
  with pytest.raises(ValueError, match="3 targets but 2 predictions"):
    rank_accuracy([0, 1, 2], [0, 1])


def test_evaluation_figures_import_no_tensorflow():
  import subprocess
  import sys

  code = (
    "import sys, t0jax.evaluate.metrics, t0jax.evaluate.scorer, t0jax.evaluate.generate; "
    "assert 'tensorflow' not in sys.modules"
  )
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]


def test_ablation_figure_and_table_show_each_runs_held_out_median(tmp_path):
  def run(median, low, high):
    stats = {"median": median, "min": low, "max": high, "num_prompts": 3}
    return {"datasets": {"demo_story": {"original_task": {"accuracy": stats}, "chance": 36.1}}}

  panels = {
    "held-in families": [("1", run(35.0, 33.0, 38.5)), ("5", run(50.5, 40.5, 52.0))],
    "prompts per family": [("1", run(41.0, 39.0, 44.0)), ("all", run(50.5, 40.5, 52.0))],
  }
  path = report.write_ablation(panels, "demo_story", str(tmp_path / "abl"))
  assert path.endswith("ablation.png") and (tmp_path / "abl" / "ablation.png").stat().st_size > 0
  table = (tmp_path / "abl" / "ablation.md").read_text().splitlines()
  assert table[2:] == [
    "| held-in families | 1 | 35.0 | 33.0 | 38.5 | 36.1 |",
    "| held-in families | 5 | 50.5 | 40.5 | 52.0 | 36.1 |",
    "| prompts per family | 1 | 41.0 | 39.0 | 44.0 | 36.1 |",
    "| prompts per family | all | 50.5 | 40.5 | 52.0 | 36.1 |",
  ]

"""`t0jax tasks`: mixture summary, a mixture's tasks and rates, processed examples, errors."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import pytest  # noqa: E402

from t0jax.cli import tasks as catalog_cli
from t0jax import cli  # noqa: E402
from t0jax.data import settings  # noqa: E402


@pytest.fixture(autouse=True)
def clean_settings():
  yield
  settings.reset()


def test_summary_lists_every_registered_mixture_with_task_counts(capsys):
  assert cli.main(["tasks"]) == 0
  out = capsys.readouterr().out
  lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
  import t0jax.catalog as catalog

  rates = catalog.mixture_rates("demo_train")
  datasets = {catalog.task_info(t).dataset.key for t, _ in rates}
  total = f"{sum(r for _, r in rates):,.0f}"
  assert lines["demo_train"][1:4] == [str(len(rates)), str(len(datasets)), total]
  assert len(datasets) >= 4  # the demo's held-in families
  assert lines["demo_heldout_score_eval"][1:3] == ["3", "1"]
  for name in ("t0_train", "t0p_train", "t0pp_train", "t0_eval_score_eval"):
    assert name in lines


def test_mixture_listing_shows_each_task_with_its_rate_share_and_split(capsys):
  assert catalog_cli.main(["demo_train"]) == 0
  out = capsys.readouterr().out
  import t0jax.catalog as catalog

  rates = dict(catalog.mixture_rates("demo_train"))
  assert out.startswith(f"demo_train: {len(rates)} tasks")
  row = next(line for line in out.splitlines() if line.startswith("demo_facts_follows "))
  share = 100 * rates["demo_facts_follows"] / sum(rates.values())
  assert row.split()[1:] == ["3,000", f"{share:.2f}%", "train"]


def test_task_details_name_the_dataset_prompt_and_split_sizes(capsys):
  assert catalog_cli.main(["demo_story_sensible_ending_score_eval"]) == 0
  out = capsys.readouterr().out
  assert "prompt    'sensible ending'" in out and "score-eval" in out
  assert "validation -> validation (200 examples)" in out
  assert "demo_heldout_score_eval" in out


def test_show_prints_inputs_targets_and_for_score_eval_the_choices_and_answer(capsys):
  assert (
    catalog_cli.main(["show", "demo_story_complete_the_sentence_score_eval", "-n", "2", "--tokens"])
    == 0
  )
  out = capsys.readouterr().out
  assert "(validation): 2 example(s)" in out and out.count("--- example") == 2
  assert "Complete the sentence:" in out
  assert out.count("<- answer") == 2 and "choice 1:" in out
  assert "tokens: inputs" in out


def test_show_of_a_training_task_reads_its_train_split(capsys):
  assert catalog_cli.main(["show", "demo_reviews_tone", "-n", "1"]) == 0
  out = capsys.readouterr().out
  assert "demo_reviews_tone (train): 1 example(s)" in out
  assert "What is the tone of the following review?" in out
  assert out.strip().splitlines()[-1] in ("target: happy", "target: unhappy")


def test_unknown_names_exit_2_listing_the_closest_names(capsys):
  assert cli.main(["tasks", "show", "demo_reviews_tonne"]) == 2
  err = capsys.readouterr().err
  assert "no task or mixture named 'demo_reviews_tonne'" in err and "demo_reviews_tone" in err
  assert catalog_cli.main(["demo_trian"]) == 2
  assert "demo_train" in capsys.readouterr().err


def test_show_without_any_data_source_exits_1_saying_where_to_put_data(capsys, tmp_path):
  settings.set_source("jsonl")
  settings.set_data_dir(tmp_path)
  assert catalog_cli.main(["show", "demo_pairs_same_meaning"]) == 1
  err = capsys.readouterr().err
  assert "demo_pairs" in err and "train.jsonl does not exist" in err

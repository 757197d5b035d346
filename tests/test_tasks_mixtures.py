"""Mixtures and T0's examples-proportional rates (500,000-example cap shared by a dataset's
prompts), computed by t-zero's rules (tasks/t0.py) over the catalogue's own prompts."""

import logging
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import pytest  # noqa: E402
import seqio  # noqa: E402

import t0jax.catalog as catalog  # noqa: E402
from t0jax.catalog import testing  # noqa: E402
from t0jax.catalog.testing import template  # noqa: E402


def test_rate_rule_caps_big_datasets_at_500k_shared_by_their_prompts():
  assert catalog.prompt_task_rate(1_000, 7) == 1_000
  assert catalog.prompt_task_rate(500_000, 4) == 500_000  # the cap applies only above it
  assert catalog.prompt_task_rate(3_600_000, 8) == 62_500
  assert catalog.prompt_task_rate(600_000, 6) == 83_333  # t-zero's integer division


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mixcat"))
  choice, free = "no ||| yes", None
  datasets = [
    {
      "dataset": "big",
      "hf": {"path": "big"},
      "splits": {"train": 1_000_000, "validation": 10},
      "train_split": "train",
      "eval_splits": ["validation"],
      "mixtures": ["t0_train", "t0p_train"],
    },
    {
      "dataset": "small",
      "subset": "s",
      "hf": {"path": "small"},
      "splits": {"train": 1_000},
      "train_split": "train",
      "mixtures": ["t0_train"],
    },
    {
      "dataset": "plus",
      "hf": {"path": "plus"},
      "splits": {"train": 600_000},
      "train_split": "train",
      "mixtures": ["t0p_train"],
    },
    {
      "dataset": "heldout",
      "hf": {"path": "heldout"},
      "splits": {"dev_r1": 100, "dev_r2": 200},
      "eval_splits": ["dev_r1", "dev_r2"],
      "mixtures": ["t0_eval"],
    },
  ]
  templates = {
    ("big", None): [
      template("b1", "{{a}} ||| x", choice, original_task=False),
      template("b2", "{{a}} ||| x", choice),
      template("b3", "{{a}} ||| x", free),
      template("b4", "{{a}} ||| x", choice),
    ],
    ("small", "s"): [
      template(f"s{i}", "{{a}} ||| x", choice, original_task=False) for i in range(3)
    ],
    ("plus", None): [template(f"p{i}", "{{a}} ||| x", free) for i in range(6)],
    ("heldout", None): [
      template("h1", "{{a}} ||| x", choice),
      template("h2", "{{a}} ||| x", choice),
      template("h3", "{{a}} ||| x", choice, original_task=False),
      template("h4", "{{a}} ||| x", free),
    ],
  }
  testing.write_catalog(root, datasets, templates)
  infos = [
    info for spec in catalog.load_catalog(root).datasets for info, _ in catalog.plan_tasks(spec)
  ]
  return catalog.mixture_members(infos)


def test_t0_train_gives_each_prompt_task_the_capped_or_full_count(synthetic):
  assert dict(synthetic["t0_train"]) == {
    "big_b1": 125_000.0,
    "big_b2": 125_000.0,
    "big_b3": 125_000.0,
    "big_b4": 125_000.0,
    "small_s_s0": 1_000.0,
    "small_s_s1": 1_000.0,
    "small_s_s2": 1_000.0,
  }


def test_each_training_family_takes_only_the_datasets_that_list_it(synthetic):
  assert {t for t, _ in synthetic["t0+_train"]} == {f"big_b{i}" for i in range(1, 5)} | {
    f"plus_p{i}" for i in range(6)
  } | {f"small_s_s{i}" for i in range(3)}
  assert dict(synthetic["t0+_train"])["plus_p0"] == 83_333.0
  assert synthetic["t0++_train"] == synthetic["t0+_train"]  # no SGLUE dataset here
  assert synthetic["t0p_train"] == synthetic["t0+_train"]
  assert synthetic["t0pp_train"] == synthetic["t0++_train"]


def test_ablations_take_original_task_prompts_and_keep_the_whole_datasets_cap(synthetic):
  # t-zero: the first original-task prompt in name order (b2); a dataset without one (small)
  # has none; the cap still divides by all of the dataset's prompts.
  assert dict(synthetic["t0_train_one_og_prompt"]) == {"big_b2": 125_000.0}
  assert dict(synthetic["t0_train_all_og_prompts"]) == {
    "big_b2": 125_000.0,
    "big_b3": 125_000.0,
    "big_b4": 125_000.0,
  }


def test_train_score_eval_holds_twins_of_original_task_training_prompts(synthetic):
  assert dict(synthetic["t0_train_score_eval"]) == {
    "big_b2_score_eval": 500_000.0,
    "big_b4_score_eval": 500_000.0,
  }


def test_eval_mixture_holds_score_eval_twins_of_original_prompts_per_eval_split(synthetic):
  # Rated by the task's train split as seqio's mixing_rate_num_examples is; without one, by
  # the eval split.
  assert dict(synthetic["t0_eval_score_eval"]) == {
    "heldout_h1_r1_score_eval": 100.0,
    "heldout_h1_r2_score_eval": 200.0,
    "heldout_h2_r1_score_eval": 100.0,
    "heldout_h2_r2_score_eval": 200.0,
  }


def test_empty_mixtures_are_skipped_with_a_debug_log(caplog):
  with caplog.at_level(logging.DEBUG, logger="t0jax.catalog"):
    assert catalog.register_mixtures({"nothing_here_yet": []}) == []
  assert "nothing_here_yet" not in seqio.MixtureRegistry.names()
  assert any("nothing_here_yet" in r.getMessage() for r in caplog.records)


def test_registered_t0_mixtures_follow_the_rate_rule_for_every_dataset():
  families = {
    "t0_train": {"t0_train"},
    "t0+_train": {"t0_train", "t0p_train"},
    "t0++_train": {"t0_train", "t0p_train", "t0pp_train"},
  }
  for name, wanted in families.items():
    rates = catalog.mixture_rates(name)
    per_dataset = {}
    for task, _ in rates:
      per_dataset.setdefault(catalog.task_info(task).dataset.key, []).append(task)
    for task, rate in rates:
      spec = catalog.task_info(task).dataset
      assert wanted & set(spec.mixtures)
      assert rate == catalog.prompt_task_rate(spec.num_train_examples(), len(spec.prompts))
      assert len(per_dataset[spec.key]) == len(spec.prompts)  # all prompts train
  assert catalog.mixture_rates("t0p_train") == catalog.mixture_rates("t0+_train")


def test_t0_eval_score_eval_holds_only_original_task_score_eval_twins():
  if "t0_eval_score_eval" not in catalog.MIXTURE_NAMES:
    pytest.skip("no t0_eval datasets in the catalogue yet")
  for task, _ in catalog.mixture_rates("t0_eval_score_eval"):
    info = catalog.task_info(task)
    assert info.score_eval and info.prompt.original_task and "t0_eval" in info.dataset.mixtures
    assert "validation" in catalog.get_task_or_mixture(task).splits


def test_demo_mixtures_split_held_in_training_from_held_out_evaluation():
  train = {catalog.task_info(t).dataset.dataset for t, _ in catalog.mixture_rates("demo_train")}
  heldout = {
    catalog.task_info(t).dataset.dataset
    for t, _ in catalog.mixture_rates("demo_heldout_score_eval")
  }
  both = {
    catalog.task_info(t).dataset.dataset for t, _ in catalog.mixture_rates("demo_eval_score_eval")
  }
  from t0jax.catalog import demo

  specs = catalog.load_catalog(demo.ROOT).datasets
  assert (
    train
    == {s.dataset for s in specs if "demo_train" in s.mixtures}
    >= {"demo_reviews", "demo_news", "demo_facts", "demo_pairs"}
  )
  assert heldout == {"demo_story"} and both == train | heldout
  assert not train & heldout

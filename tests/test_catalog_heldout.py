"""The held-out evaluation slice of the catalogue (tasks/catalog/heldout.yaml).

T0 is judged zero-shot on these datasets by rank classification over the prompts whose metadata
says `original_task: true`, so these tests pin down what that evaluation relies on: every dataset
has enough such prompts, their targets are the gold answer choice, the choice words mean the
class they stand for, and the offline fixtures follow the Hugging Face schema.
"""

import os

import pytest

from catalog_helpers import (
  catalog_specs,
  check_choices_in_prompt_flags,
  dataset_ids,
  fixture_rows as _fixture_rows,
  prompts_path as _prompts_path,
  raw_templates as _raw_templates,
  rendered_fixture_rows,
  TASKS,
)
from t0jax.prompts import load_templates_file

CATALOG = TASKS / "catalog" / "heldout.yaml"
MIXTURES = {"t0_train", "t0p_train", "t0pp_train", "t0_eval"}
MIN_ORIGINAL_PROMPTS = 5


def _super_glue_gold(row):
  return None if row["label"] == -1 else row["label"]


# Per dataset: the HF fields, the HF label names (None when the label is not a ClassLabel), the
# number of answer choices an original-task prompt must offer, and the gold choice index of a row
# (None for unlabelled test rows).
DATASETS = {
  ("super_glue", "rte"): dict(
    fields={"premise", "hypothesis", "idx", "label"},
    label_names=["entailment", "not_entailment"],
    n_choices=2,
    gold=_super_glue_gold,
    cluster="nli",
    mixtures={"t0_eval"},
  ),
  ("super_glue", "cb"): dict(
    fields={"premise", "hypothesis", "idx", "label"},
    label_names=["entailment", "contradiction", "neutral"],
    n_choices=3,
    gold=_super_glue_gold,
    cluster="nli",
    mixtures={"t0_eval"},
  ),
  ("anli", None): dict(
    fields={"uid", "premise", "hypothesis", "label", "reason"},
    label_names=["entailment", "neutral", "contradiction"],
    n_choices=3,
    gold=_super_glue_gold,
    cluster="nli",
    mixtures={"t0_eval"},
  ),
  ("super_glue", "wsc.fixed"): dict(
    fields={"text", "span1_index", "span2_index", "span1_text", "span2_text", "idx", "label"},
    label_names=["False", "True"],
    n_choices=2,
    gold=_super_glue_gold,
    cluster="coreference",
    mixtures={"t0pp_train", "t0_eval"},
  ),
  ("winogrande", "winogrande_xl"): dict(
    fields={"sentence", "option1", "option2", "answer"},
    label_names=None,
    n_choices=2,
    gold=lambda row: int(row["answer"]) - 1 if row["answer"] else None,
    cluster="coreference",
    mixtures={"t0_eval"},
  ),
  ("super_glue", "copa"): dict(
    fields={"premise", "choice1", "choice2", "question", "idx", "label"},
    label_names=["choice1", "choice2"],
    n_choices=2,
    gold=_super_glue_gold,
    cluster="sentence_completion",
    mixtures={"t0pp_train", "t0_eval"},
  ),
  ("hellaswag", None): dict(
    fields={
      "ind",
      "activity_label",
      "ctx_a",
      "ctx_b",
      "ctx",
      "endings",
      "source_id",
      "split",
      "split_type",
      "label",
    },
    label_names=None,
    n_choices=4,
    gold=lambda row: int(row["label"]) if row["label"] else None,
    cluster="sentence_completion",
    mixtures={"t0p_train", "t0pp_train", "t0_eval"},
  ),
  ("story_cloze", "2016"): dict(
    fields={
      "story_id",
      "input_sentence_1",
      "input_sentence_2",
      "input_sentence_3",
      "input_sentence_4",
      "sentence_quiz1",
      "sentence_quiz2",
      "answer_right_ending",
    },
    label_names=None,
    n_choices=2,
    gold=lambda row: row["answer_right_ending"] - 1,
    cluster="sentence_completion",
    mixtures={"t0_eval"},
  ),
  ("super_glue", "wic"): dict(
    fields={"word", "sentence1", "sentence2", "start1", "start2", "end1", "end2", "idx", "label"},
    label_names=["False", "True"],
    n_choices=2,
    gold=_super_glue_gold,
    cluster="word_sense",
    mixtures={"t0pp_train", "t0_eval"},
  ),
}

# Choice words allowed for each class, for datasets whose choices are fixed words: catches a prompt
# whose choices are listed in the wrong order for the ClassLabel (e.g. "no ||| yes" for RTE).
CLASS_WORDS = {
  ("super_glue", "rte"): [
    {"yes", "true", "implied", "supported"},
    {"no", "not true", "not implied", "unsupported"},
  ],
  ("super_glue", "cb"): [
    {"yes", "true", "support", "right"},
    {"no", "false", "contradict", "wrong"},
    {"maybe", "neither", "undecided", "unclear", "it is not possible to tell"},
  ],
  ("anli", None): [
    {"yes", "true", "confirm", "correct"},
    {"maybe", "neither", "undetermined"},
    {"no", "false", "refute", "incorrect"},
  ],
  ("super_glue", "wsc.fixed"): [{"no", "false"}, {"yes", "true"}],
  ("super_glue", "wic"): [{"no", "false", "different"}, {"yes", "true", "same"}],
}

KEYS = sorted(DATASETS, key=str)
IDS = dataset_ids(KEYS)


def _catalog():
  return catalog_specs(CATALOG)


def _original_with_choices(raw):
  return {
    tid
    for tid, t in raw["templates"].items()
    if t["metadata"]["original_task"] and t.get("answer_choices")
  }


def test_catalogue_holds_exactly_the_heldout_datasets():
  assert set(_catalog()) == set(DATASETS)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_spec_names_cluster_mixtures_and_consistent_splits(key):
  spec, expected = _catalog()[key], DATASETS[key]
  assert spec["hf"]["path"] == key[0]
  if key[1] is not None:
    assert spec["hf"]["name"] == key[1]
  assert spec["cluster"] == expected["cluster"]
  assert set(spec["mixtures"]) == expected["mixtures"] and set(spec["mixtures"]) <= MIXTURES
  assert all(isinstance(n, int) and n > 0 for n in spec["splits"].values())
  assert spec["eval_splits"] and set(spec["eval_splits"]) <= set(spec["splits"])
  trains = any(m.endswith("_train") for m in spec["mixtures"])
  assert ("train_split" in spec) == trains
  if trains:
    assert spec["train_split"] in spec["splits"]
  assert spec.get("manual_dir", False) == (key == ("story_cloze", "2016"))


def test_anli_is_evaluated_on_its_three_dev_rounds():
  assert _catalog()[("anli", None)]["eval_splits"] == ["dev_r1", "dev_r2", "dev_r3"]


@pytest.mark.parametrize(
  "key",
  [k for k in KEYS if "tfds" in _catalog()[k]],
  ids=[i for k, i in zip(KEYS, IDS) if "tfds" in _catalog()[k]],
)
def test_tfds_source_yields_the_hf_fields_and_label_encoding(key, tmp_path):
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")
  import tensorflow_datasets as tfds

  spec, expected = _catalog()[key], DATASETS[key]
  name, version = spec["tfds"].split(":")
  builder_name, config = name.split("/")
  assert (builder_name, config) == key
  builder = tfds.builder_cls(builder_name)(config=config, version=version, data_dir=str(tmp_path))
  assert str(builder.version) == version
  renames = spec.get("tfds_fields", {})
  features = builder.info.features
  assert {renames.get(k, k) for k in features.keys()} == expected["fields"]
  label = renames.get("label", "label")
  assert list(features[label].names) == expected["label_names"]


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_prompt_file_names_its_dataset_and_has_enough_original_prompts(key):
  raw = _raw_templates(*key)
  assert raw["dataset"] == key[0] and raw.get("subset") == key[1]
  templates = raw["templates"]
  assert len(templates) >= MIN_ORIGINAL_PROMPTS
  assert len(_original_with_choices(raw)) >= MIN_ORIGINAL_PROMPTS
  names = [t["name"] for t in templates.values()]
  assert len(set(names)) == len(names)
  for tid, t in templates.items():
    assert t["id"] == tid
    assert t["metadata"]["languages"] == ["en"] and t["metadata"]["metrics"]
  in_prompt = {
    t["metadata"]["choices_in_prompt"]
    for tid, t in templates.items()
    if tid in _original_with_choices(raw)
  }
  assert in_prompt == {True, False}, "original prompts should mix listed and unlisted choices"


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_fixture_rows_follow_the_hf_schema_and_cover_two_classes(key):
  rows, expected = _fixture_rows(*key), DATASETS[key]
  assert len(rows) == 3
  for row in rows:
    assert set(row) == expected["fields"]
  golds = {expected["gold"](row) for row in rows} - {None}
  assert len(golds) >= (3 if key == ("super_glue", "cb") else 2)
  assert golds <= set(range(expected["n_choices"]))


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_every_template_renders_every_fixture_row(key):
  rendered_fixture_rows(*key)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_original_prompt_targets_are_the_gold_choice(key):
  loaded = load_templates_file(_prompts_path(*key))
  original = _original_with_choices(_raw_templates(*key))
  expected = DATASETS[key]
  for row in _fixture_rows(*key):
    gold = expected["gold"](row)
    for tid in original:
      rendered = loaded.templates[tid].apply(dict(row))
      if gold is None:
        assert rendered is None, f"{tid} renders a target for an unlabelled row"
        continue
      if rendered is None:  # e.g. a COPA prompt written for "cause" rows only
        continue
      assert len(rendered.choices) == expected["n_choices"]
      assert rendered.target in rendered.choices
      assert rendered.choices.index(rendered.target) == gold, tid


@pytest.mark.parametrize(
  "key",
  sorted(CLASS_WORDS, key=str),
  ids=[f"{d}/{s}" if s else d for d, s in sorted(CLASS_WORDS, key=str)],
)
def test_choice_words_stand_for_the_right_class(key):
  loaded = load_templates_file(_prompts_path(*key))
  row = _fixture_rows(*key)[0]
  for tid in _original_with_choices(_raw_templates(*key)):
    choices = loaded.templates[tid].get_answer_choices(dict(row))
    for index, choice in enumerate(choices):
      assert choice.lower() in CLASS_WORDS[key][index], (tid, index, choice)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_choices_in_prompt_flag_matches_the_rendered_input(key):
  check_choices_in_prompt_flags(*key)

"""The T0+ / T0++ training-addition slice of the catalogue (tasks/catalog/t0p_t0pp.yaml).

These datasets only train (T0 never evaluates zero-shot on them), so the tests pin down what
training relies on: the specs put each dataset in the right mixtures with usable splits, every
prompt renders on HF-schema rows without missing fields, classification prompts produce the gold
answer choice as target (and skip unlabelled rows), and each TFDS source named in the catalogue
really yields the fields the prompts read.
"""

import os

import pytest

from catalog_helpers import (
  catalog_specs,
  dataset_ids,
  fixture_rows as _fixture_rows,
  jinja_fields,
  prompts_path as _prompts_path,
  rendered_fixture_rows,
  TASKS,
)
from t0jax.prompts import load_templates_file

CATALOG = TASKS / "catalog" / "t0p_t0pp.yaml"
T0P = {"t0p_train", "t0pp_train"}
T0PP = {"t0pp_train"}
MIN_PROMPTS = 3
# T0's examples-proportional mixing caps a dataset at this many examples.
MIXING_CAP = 500_000


def _label_gold(row):
  return None if row["label"] == -1 else row["label"]


def _keyed_gold(row):
  labels = row["choices"]["label"]
  return labels.index(row["answerKey"]) if row["answerKey"] in labels else None


# Per dataset: HF top-level fields, cluster, mixtures, and the gold of a fixture row: an index
# into the answer choices of its original-task prompts, the gold answer text, or None when the
# row is unlabelled (HF test rows) and prompts needing the answer must skip it.
DATASETS = {
  ("ai2_arc", "ARC-Challenge"): dict(
    fields={"id", "question", "choices", "answerKey"},
    gold=_keyed_gold,
    cluster="multiple_choice_qa",
    mixtures=T0P,
  ),
  ("ai2_arc", "ARC-Easy"): dict(
    fields={"id", "question", "choices", "answerKey"},
    gold=_keyed_gold,
    cluster="multiple_choice_qa",
    mixtures=T0P,
  ),
  ("openbookqa", "main"): dict(
    fields={"id", "question_stem", "choices", "answerKey"},
    gold=_keyed_gold,
    cluster="multiple_choice_qa",
    mixtures=T0P,
  ),
  ("race", "high"): dict(
    fields={"example_id", "article", "answer", "question", "options"},
    gold=lambda row: "ABCD".index(row["answer"]),
    cluster="multiple_choice_qa",
    mixtures=T0P,
  ),
  ("race", "middle"): dict(
    fields={"example_id", "article", "answer", "question", "options"},
    gold=lambda row: "ABCD".index(row["answer"]),
    cluster="multiple_choice_qa",
    mixtures=T0P,
  ),
  ("piqa", None): dict(
    fields={"goal", "sol1", "sol2", "label"},
    gold=_label_gold,
    cluster="multiple_choice_qa",
    mixtures=T0P,
  ),
  ("trivia_qa", "unfiltered"): dict(
    fields={
      "question",
      "question_id",
      "question_source",
      "entity_pages",
      "search_results",
      "answer",
    },
    gold=lambda row: row["answer"]["value"] if row["answer"]["aliases"] else None,
    cluster="closed_book_qa",
    mixtures=T0P,
  ),
  ("web_questions", None): dict(
    fields={"url", "question", "answers"},
    gold=lambda row: row["answers"][0] if row["answers"] else None,
    cluster="closed_book_qa",
    mixtures=T0P,
  ),
  ("squad_v2", None): dict(
    fields={"id", "title", "context", "question", "answers"},
    gold=lambda row: row["answers"]["text"][0] if row["answers"]["text"] else "unanswerable",
    cluster="extractive_qa",
    mixtures=T0P,
  ),
  ("super_glue", "boolq"): dict(
    fields={"question", "passage", "idx", "label"},
    gold=_label_gold,
    cluster="multiple_choice_qa",
    mixtures=T0PP,
  ),
  ("super_glue", "multirc"): dict(
    fields={"paragraph", "question", "answer", "idx", "label"},
    gold=_label_gold,
    cluster="multiple_choice_qa",
    mixtures=T0PP,
  ),
  ("super_glue", "record"): dict(
    fields={"passage", "query", "entities", "entity_spans", "answers", "idx"},
    gold=lambda row: row["answers"][0] if row["answers"] else None,
    cluster="extractive_qa",
    mixtures=T0PP,
  ),
}

# Binary ClassLabels (0 = False, 1 = True): the choice words must mean the class at their index,
# which `answer_choices[label]` alone cannot check.
CLASS_WORDS = {
  ("super_glue", "boolq"): [{"no", "false"}, {"yes", "true"}],
  ("super_glue", "multirc"): [{"no", "false", "incorrect"}, {"yes", "true", "correct"}],
}

KEYS = sorted(DATASETS, key=str)
IDS = dataset_ids(KEYS)


def _catalog():
  return catalog_specs(CATALOG)


def _used_fields(template):
  """Top-level example fields a template reads (Jinja globals and the injected choices aside)."""
  return jinja_fields(template.jinja, template.answer_choices)


def test_catalogue_holds_exactly_this_slice():
  assert set(_catalog()) == set(DATASETS)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_spec_trains_on_train_in_its_mixtures_with_consistent_splits(key):
  spec, expected = _catalog()[key], DATASETS[key]
  assert spec["hf"]["path"] == key[0]
  assert spec["hf"].get("name") == key[1]
  assert spec["cluster"] == expected["cluster"]
  assert set(spec["mixtures"]) == expected["mixtures"]
  assert all(isinstance(n, int) and n > 0 for n in spec["splits"].values())
  assert spec["train_split"] == "train" and "train" in spec["splits"]
  assert spec["eval_splits"] and set(spec["eval_splits"]) <= set(spec["splits"]) - {"train"}
  assert spec["splits"]["train"] < MIXING_CAP
  assert not spec.get("manual_dir", False)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_prompt_file_has_enough_prompts_with_truthful_metadata(key):
  loaded = load_templates_file(_prompts_path(*key))
  assert (loaded.dataset, loaded.subset) == key
  templates = list(loaded.templates.values())
  assert len(templates) >= MIN_PROMPTS
  assert any(t.metadata.original_task for t in templates)
  for t in templates:
    assert t.metadata.languages == ("en",) and t.metadata.metrics, t.name
    # Classification prompts are scored by accuracy over their choices; generative ones are not.
    assert ("Accuracy" in t.metadata.metrics) == (t.answer_choices is not None), t.name
    assert not (t.metadata.choices_in_prompt and t.answer_choices is None), t.name
  originals_with_choices = [t for t in templates if t.metadata.original_task and t.answer_choices]
  if originals_with_choices:
    listed = {t.metadata.choices_in_prompt for t in originals_with_choices}
    assert listed == {True, False}, "original prompts should mix listed and unlisted choices"


def test_template_ids_are_unique_across_the_slice():
  ids = [tid for key in KEYS for tid in load_templates_file(_prompts_path(*key)).templates]
  assert len(ids) == len(set(ids))


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_fixture_rows_follow_the_hf_schema_and_cover_two_answers(key):
  rows, expected = _fixture_rows(*key), DATASETS[key]
  assert len(rows) == 3
  for row in rows:
    assert set(row) == expected["fields"]
  golds = [expected["gold"](row) for row in rows]
  assert len({g for g in golds if g is not None}) >= 2


def test_squad_v2_fixture_answer_offsets_point_at_the_answer_text():
  for row in _fixture_rows("squad_v2", None):
    answers = row["answers"]
    assert len(answers["text"]) == len(answers["answer_start"])
    for text, start in zip(answers["text"], answers["answer_start"]):
      assert row["context"][start : start + len(text)] == text


def test_record_fixture_entity_spans_and_answers_come_from_the_passage():
  for row in _fixture_rows("super_glue", "record"):
    spans = row["entity_spans"]
    for text, start, end in zip(spans["text"], spans["start"], spans["end"]):
      assert row["passage"][start : end + 1] == text  # HF `end` is inclusive
    assert set(spans["text"]) == set(row["entities"])
    assert set(row["answers"]) <= set(row["entities"])
    assert "@placeholder" in row["query"]


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_every_template_renders_fixture_rows_with_gold_targets(key):
  expected = DATASETS[key]
  for _, template, i, row, rendered in rendered_fixture_rows(*key):
    gold = expected["gold"](row)
    if rendered is None:
      # Only rows without an answer (or, for answer-conditioned prompts, without a usable
      # one) may be skipped; an original prompt must serve every labelled row.
      assert not (template.metadata.original_task and gold is not None), (
        f"{template.name!r} skipped labelled fixture row {i}"
      )
      continue
    assert rendered.input and rendered.target
    if template.answer_choices is None:
      continue
    assert gold is not None, f"{template.name!r} rendered unlabelled fixture row {i}"
    assert rendered.target in rendered.choices, (template.name, i)
    if template.metadata.original_task:
      want = rendered.choices[gold] if isinstance(gold, int) else gold
      assert rendered.target == want, (template.name, i)


@pytest.mark.parametrize("key", sorted(CLASS_WORDS, key=str), ids=lambda k: "/".join(k))
def test_binary_choice_words_match_the_class_label_order(key):
  loaded, row = load_templates_file(_prompts_path(*key)), _fixture_rows(*key)[0]
  for template in loaded.templates.values():
    if template.metadata.original_task and template.answer_choices:
      choices = [c.lower() for c in template.get_answer_choices(row)]
      assert len(choices) == 2, template.name
      for index, words in enumerate(CLASS_WORDS[key]):
        assert choices[index] in words, (template.name, choices)


TFDS_KEYS = [k for k in KEYS if "tfds" in _catalog()[k]]


@pytest.mark.parametrize("key", TFDS_KEYS, ids=["/".join(filter(None, k)) for k in TFDS_KEYS])
def test_tfds_source_exists_and_yields_every_field_the_prompts_read(key, tmp_path):
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")
  import tensorflow_datasets as tfds

  spec = _catalog()[key]
  name, version = spec["tfds"].split(":")
  builder_name, _, config = name.partition("/")
  kwargs = {"config": config} if config else {}
  # Builds the dataset info from the installed builder code only: nothing is downloaded.
  builder = tfds.builder_cls(builder_name)(version=version, data_dir=str(tmp_path), **kwargs)
  assert str(builder.version) == version
  renames = spec.get("tfds_fields", {})
  features = builder.info.features
  provided = {renames.get(k, k) for k in features.keys()}
  loaded = load_templates_file(_prompts_path(*key))
  for template in loaded.templates.values():
    missing = _used_fields(template) - provided
    assert not missing, f"{template.name!r} reads {missing}, which {spec['tfds']} lacks"
  if "label" in provided:
    tfds_label = next(k for k in features.keys() if renames.get(k, k) == "label")
    assert features[tfds_label].num_classes == 2

"""The `t0_other` slice of the catalogue (tasks/catalog/t0_other.yaml): the T0 training datasets
for sentiment, topic classification, structure-to-text, summarization and paraphrase
identification.

These datasets only feed the training mixtures, so the tests pin down what training relies on:
the split sizes that set the mixing rates (five datasets pass the 500,000 cap), prompts that render
on rows in the exact Hugging Face schema, targets that are the gold choice or the gold text, choice
lists in the order of the HF class labels, and truthful metadata.
"""

import os

import pytest

from catalog_helpers import (
  catalog_specs,
  check_choices_in_prompt_flags,
  dataset_ids as _ids,
  fixture_rows as _fixture_rows,
  jinja_fields,
  prompts_path as _prompts_path,
  raw_templates,
  rendered_fixture_rows,
  TASKS,
)
from t0jax.prompts import load_templates_file

CATALOG = TASKS / "catalog" / "t0_other.yaml"
TRAIN_MIXTURES = {"t0_train", "t0p_train", "t0pp_train"}
MIN_PROMPTS = 3
MIXING_CAP = 500_000


def _label(row):
  return None if row["label"] == -1 else row["label"]


def _classify(fields, n_classes, cluster, gold=_label):
  return dict(fields=fields, n_classes=n_classes, cluster=cluster, gold=gold, target=None)


def _generate(fields, cluster, target):
  return dict(fields=fields, n_classes=None, cluster=cluster, gold=None, target=target)


def _strip_dash(summary):
  # multi_news summaries start with an en dash the prompts drop.
  return summary[2:] if summary.startswith("– ") else summary


# Per dataset: the HF fields; for classification the number of classes and the gold class of a
# row (None for unlabelled rows); for generation the gold text an original-task prompt must target.
DATASETS = {
  ("amazon_polarity", None): _classify({"label", "title", "content"}, 2, "sentiment"),
  ("app_reviews", None): _classify(
    {"package_name", "review", "date", "star"}, 5, "sentiment", gold=lambda row: row["star"] - 1
  ),
  ("imdb", None): _classify({"text", "label"}, 2, "sentiment"),
  ("rotten_tomatoes", None): _classify({"text", "label"}, 2, "sentiment"),
  ("yelp_review_full", None): _classify({"label", "text"}, 5, "sentiment"),
  ("ag_news", None): _classify({"text", "label"}, 4, "topic_classification"),
  ("dbpedia_14", None): _classify({"label", "title", "content"}, 14, "topic_classification"),
  ("trec", None): _classify(
    {"text", "coarse_label", "fine_label"},
    6,
    "topic_classification",
    gold=lambda row: row["coarse_label"],
  ),
  ("common_gen", None): _generate(
    {"concept_set_idx", "concepts", "target"}, "structure_to_text", lambda row: row["target"]
  ),
  ("wiki_bio", None): _generate(
    {"input_text", "target_text"}, "structure_to_text", lambda row: row["target_text"]
  ),
  ("cnn_dailymail", "3.0.0"): _generate(
    {"article", "highlights", "id"}, "summarization", lambda row: row["highlights"]
  ),
  ("gigaword", None): _generate(
    {"document", "summary"}, "summarization", lambda row: row["summary"]
  ),
  ("multi_news", None): _generate(
    {"document", "summary"}, "summarization", lambda row: _strip_dash(row["summary"])
  ),
  ("samsum", None): _generate(
    {"id", "dialogue", "summary"}, "summarization", lambda row: row["summary"]
  ),
  ("xsum", None): _generate(
    {"document", "summary", "id"}, "summarization", lambda row: row["summary"]
  ),
  ("glue", "mrpc"): _classify(
    {"sentence1", "sentence2", "label", "idx"}, 2, "paraphrase_identification"
  ),
  ("glue", "qqp"): _classify(
    {"question1", "question2", "label", "idx"}, 2, "paraphrase_identification"
  ),
  ("paws", "labeled_final"): _classify(
    {"id", "sentence1", "sentence2", "label"}, 2, "paraphrase_identification"
  ),
}

# HF train sizes of the datasets over the mixing cap: each counts as 500,000 / (its prompts).
OVER_CAP = {
  "amazon_polarity": 3_600_000,
  "yelp_review_full": 650_000,
  "dbpedia_14": 560_000,
  "wiki_bio": 582_659,
  "gigaword": 3_803_957,
}

_NEG_POS = [
  {
    "negative",
    "no",
    "disliked",
    "unfavourable",
    "thumbs down",
    "rotten",
    "discouraged",
    "unflattering",
  },
  {"positive", "yes", "liked", "favourable", "thumbs up", "fresh", "encouraged", "flattering"},
]
_STARS = [
  {"1", "1 star", "one", "very low", "definitely not"},
  {"2", "2 stars", "two", "low", "probably not"},
  {"3", "3 stars", "three", "medium", "not sure"},
  {"4", "4 stars", "four", "high", "probably"},
  {"5", "5 stars", "five", "very high", "definitely"},
]
_DBPEDIA = [
  "company",
  "educational institution",
  "artist",
  "athlete",
  "office holder",
  "means of transportation",
  "building",
  "natural place",
  "village",
  "animal",
  "plant",
  "album",
  "film",
  "written work",
]
# Choice words allowed for each class index, matching the HF ClassLabel order: catches a prompt
# whose choices are listed in the wrong order (e.g. "positive ||| negative" for imdb).
CLASS_WORDS = {
  ("amazon_polarity", None): _NEG_POS,
  ("imdb", None): _NEG_POS,
  ("rotten_tomatoes", None): _NEG_POS,
  ("app_reviews", None): _STARS,
  ("yelp_review_full", None): _STARS,
  ("ag_news", None): [
    {"world", "world politics", "a politician"},
    {"sports", "an athlete"},
    {"business", "a business executive"},
    {"sci/tech", "science and technology", "a scientist"},
  ],
  ("dbpedia_14", None): [{name} for name in _DBPEDIA],
  ("trec", None): [
    {"abbreviation", "an abbreviation"},
    {"entity", "an entity"},
    {"description", "a description"},
    {"person", "a person"},
    {"location", "a location"},
    {"number", "a number"},
  ],
  ("glue", "mrpc"): [{"no", "not equivalent"}, {"yes", "equivalent"}],
  ("glue", "qqp"): [{"no", "keep separate"}, {"yes", "merge"}],
  ("paws", "labeled_final"): [{"no", "different"}, {"yes", "same"}],
}
# Prompts that ask the opposite question on purpose, so their yes/no run the other way.
INVERTED = {("paws", "labeled_final"): {"word order changes meaning"}}

# TFDS class names, in HF ClassLabel order, for the classification datasets with a TFDS source.
TFDS_LABEL_NAMES = {
  ("imdb", None): ["neg", "pos"],
  ("glue", "mrpc"): ["not_equivalent", "equivalent"],
  ("glue", "qqp"): ["not_duplicate", "duplicate"],
  ("paws", "labeled_final"): ["different_meaning", "paraphrase"],
}

KEYS = sorted(DATASETS, key=str)
IDS = _ids(KEYS)
CLASSIFICATION = [k for k in KEYS if DATASETS[k]["n_classes"]]
GENERATION = [k for k in KEYS if not DATASETS[k]["n_classes"]]


def _catalog():
  return catalog_specs(CATALOG)


def _raw_templates(dataset, subset):
  return raw_templates(dataset, subset)["templates"]


def _original(key):
  return {tid for tid, t in _raw_templates(*key).items() if t["metadata"]["original_task"]}


def test_catalogue_holds_exactly_the_t0_other_datasets():
  assert set(_catalog()) == set(DATASETS)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_spec_trains_in_every_t0_mixture_with_consistent_splits(key):
  spec, expected = _catalog()[key], DATASETS[key]
  assert spec["hf"]["path"] == key[0]
  assert spec["hf"].get("name") == key[1]
  assert spec["cluster"] == expected["cluster"]
  assert set(spec["mixtures"]) == TRAIN_MIXTURES
  assert all(isinstance(n, int) and n > 0 for n in spec["splits"].values())
  assert spec["train_split"] == "train" and "train" in spec["splits"]
  assert set(spec["eval_splits"]) <= set(spec["splits"]) - {"train"}
  assert not spec.get("manual_dir", False)


def test_exactly_the_datasets_over_the_mixing_cap_carry_their_published_sizes():
  sizes = {dataset: spec["splits"]["train"] for (dataset, _), spec in _catalog().items()}
  assert {d: n for d, n in sizes.items() if n > MIXING_CAP} == OVER_CAP


def test_wiki_bio_is_evaluated_on_its_val_split_as_hf_names_it():
  assert _catalog()[("wiki_bio", None)]["eval_splits"] == ["val"]


def _template_fields(key):
  return set().union(
    *(jinja_fields(t["jinja"], t.get("answer_choices")) for t in _raw_templates(*key).values())
  )


@pytest.mark.parametrize(
  "key",
  [k for k in KEYS if "tfds" in _catalog()[k]],
  ids=_ids([k for k in KEYS if "tfds" in _catalog()[k]]),
)
def test_tfds_source_yields_the_fields_and_labels_the_prompts_use(key, tmp_path):
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")
  import tensorflow_datasets as tfds

  spec = _catalog()[key]
  name, version = spec["tfds"].split(":")
  builder_name, _, config = name.partition("/")
  builder_cls = tfds.builder_cls(builder_name)
  if config:
    assert config in {c.name for c in builder_cls.BUILDER_CONFIGS}
  builder = builder_cls(config=config or None, version=version, data_dir=str(tmp_path))
  assert str(builder.version) == version
  assert not builder.MANUAL_DOWNLOAD_INSTRUCTIONS
  renames = spec.get("tfds_fields", {})
  features = {renames.get(k, k): v for k, v in builder.info.features.items()}
  assert _template_fields(key) <= set(features)
  if key in TFDS_LABEL_NAMES:
    assert list(features["label"].names) == TFDS_LABEL_NAMES[key]


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_prompt_file_names_its_dataset_and_has_enough_prompts(key):
  raw = raw_templates(*key)
  assert raw["dataset"] == key[0] and raw.get("subset") == key[1]
  templates = raw["templates"]
  assert len(templates) >= MIN_PROMPTS
  assert _original(key), "at least one prompt must pose the dataset's own task"
  names = [t["name"] for t in templates.values()]
  assert len(set(names)) == len(names)
  for tid, t in templates.items():
    assert t["id"] == tid
    assert t["metadata"]["languages"] == ["en"]
    # Accuracy is for picking a choice; free text is scored by overlap metrics.
    assert ("Accuracy" in t["metadata"]["metrics"]) == bool(t.get("answer_choices")), t["name"]


@pytest.mark.parametrize("key", CLASSIFICATION, ids=_ids(CLASSIFICATION))
def test_classification_prompts_mix_listed_and_unlisted_choices(key):
  raw = _raw_templates(*key)
  with_choices = [t for t in raw.values() if t.get("answer_choices")]
  assert {t["metadata"]["choices_in_prompt"] for t in with_choices} == {True, False}


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_fixture_rows_follow_the_hf_schema(key):
  rows, expected = _fixture_rows(*key), DATASETS[key]
  assert len(rows) == 3
  for row in rows:
    assert set(row) == expected["fields"]
  if expected["n_classes"]:
    golds = {expected["gold"](row) for row in rows} - {None}
    assert len(golds) >= 2 and golds <= set(range(expected["n_classes"]))


def test_wiki_bio_fixture_keeps_the_hf_nesting_of_its_infobox():
  for row in _fixture_rows("wiki_bio", None):
    assert set(row["input_text"]) == {"table", "context"}
    table = row["input_text"]["table"]
    assert set(table) == {"column_header", "row_number", "content"}
    assert len(table["column_header"]) == len(table["row_number"]) == len(table["content"])


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_every_template_renders_a_fixture_row_without_missing_fields(key):
  rendered_fixture_rows(*key)


@pytest.mark.parametrize("key", CLASSIFICATION, ids=_ids(CLASSIFICATION))
def test_choice_targets_are_the_gold_choice_and_unlabelled_rows_are_skipped(key):
  loaded = load_templates_file(_prompts_path(*key))
  original, gold_of = _original(key), DATASETS[key]["gold"]
  for row in _fixture_rows(*key):
    gold = gold_of(row)
    for tid, template in loaded.templates.items():
      if template.answer_choices is None:
        continue
      rendered = template.apply(dict(row))
      if gold is None:
        assert rendered is None, f"{template.name!r} renders a target for an unlabelled row"
        continue
      if rendered is None:  # a prompt written for some classes only (trec "kind of place")
        continue
      assert rendered.target in rendered.choices, template.name
      if tid in original and len(rendered.choices) == DATASETS[key]["n_classes"]:
        assert rendered.choices.index(rendered.target) == gold, template.name


@pytest.mark.parametrize(
  "key", sorted(CLASS_WORDS, key=str), ids=_ids(sorted(CLASS_WORDS, key=str))
)
def test_choice_words_follow_the_hf_class_order(key):
  loaded = load_templates_file(_prompts_path(*key))
  row = next(r for r in _fixture_rows(*key) if DATASETS[key]["gold"](r) is not None)
  words = CLASS_WORDS[key]
  for template in loaded.templates.values():
    choices = template.get_answer_choices(dict(row))
    if not choices or len(choices) != DATASETS[key]["n_classes"]:
      continue
    order = words[::-1] if template.name in INVERTED.get(key, ()) else words
    for index, choice in enumerate(choices):
      assert choice.lower() in order[index], (template.name, index, choice)


@pytest.mark.parametrize("key", GENERATION, ids=_ids(GENERATION))
def test_original_generation_prompts_target_the_gold_text_and_others_do_not(key):
  loaded = load_templates_file(_prompts_path(*key))
  original, gold_of = _original(key), DATASETS[key]["target"]
  for row in _fixture_rows(*key):
    gold = gold_of(row).strip()
    for tid, template in loaded.templates.items():
      rendered = template.apply(dict(row))
      if rendered is None:
        assert not gold or tid not in original, f"{template.name!r} skips a labelled row"
        continue
      assert (rendered.target.strip() == gold) == (tid in original), template.name


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_choices_in_prompt_flag_matches_the_rendered_input(key):
  check_choices_in_prompt_flags(*key)

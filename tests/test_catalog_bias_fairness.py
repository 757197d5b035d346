"""The bias and fairness slice of the catalogue (tasks/catalog/bias_fairness.yaml): t-zero's
BIAS_FAIRNESS datasets, evaluated by `bias_fairness_eval_score_eval` and never trained on."""

import pytest

import t0jax.catalog as catalog
from catalog_helpers import (
  TASKS,
  catalog_specs,
  check_choices_in_prompt_flags,
  dataset_ids,
  fixture_rows,
  raw_templates,
  rendered_fixture_rows,
)

CATALOG = TASKS / "catalog" / "bias_fairness.yaml"
WINO = ["type1_anti", "type1_pro", "type2_anti", "type2_pro"]
# Per dataset: the HF fields, and the gold answer of a row for the choice-bearing prompts
# (None: the prompt's gold answer is not a function of one label field).
FIELDS = {
  ("crows_pairs", None): {
    "id",
    "sent_more",
    "sent_less",
    "stereo_antistereo",
    "bias_type",
    "annotations",
    "anon_writer",
    "anon_annotators",
  },
  ("jigsaw_toxicity_pred", None): {
    "comment_text",
    "toxic",
    "severe_toxic",
    "obscene",
    "threat",
    "insult",
    "identity_hate",
  },
  ("super_glue", "axg"): {"premise", "hypothesis", "idx", "label"},
  **{
    ("wino_bias", s): {
      "document_id",
      "part_number",
      "word_number",
      "tokens",
      "pos_tags",
      "parse_bit",
      "predicate_lemma",
      "predicate_framenet_id",
      "word_sense",
      "speaker",
      "ner_tags",
      "verbal_predicates",
      "coreference_clusters",
    }
    for s in WINO
  },
}
KEYS = list(FIELDS)


def test_catalogue_holds_exactly_t_zeros_bias_fairness_datasets():
  assert set(catalog_specs(CATALOG)) == set(KEYS)


@pytest.mark.parametrize("key", KEYS, ids=dataset_ids(KEYS))
def test_spec_evaluates_only_and_names_an_existing_split(key):
  spec = catalog_specs(CATALOG)[key]
  assert spec["mixtures"] == ["bias_fairness_eval"] and "train_split" not in spec
  assert spec["eval_splits"] == ["test"] and "test" in spec["splits"]
  assert spec.get("manual_dir", False) == (key[0] == "jigsaw_toxicity_pred")


@pytest.mark.parametrize("key", KEYS, ids=dataset_ids(KEYS))
def test_fixture_rows_follow_the_hf_schema(key):
  rows = fixture_rows(*key)
  assert len(rows) >= 2 and all(set(row) == FIELDS[key] for row in rows)


@pytest.mark.parametrize("key", KEYS, ids=dataset_ids(KEYS))
def test_every_prompt_renders_every_fixture_row_with_its_target_among_the_choices(key):
  rendered = rendered_fixture_rows(*key)
  for _, template, _, _, out in rendered:
    if out is not None and out.choices is not None:
      assert out.target in out.choices, template.name
  assert raw_templates(*key)["dataset"] == key[0]
  check_choices_in_prompt_flags(*key)


def test_labels_pick_the_stereotyped_sentence_and_the_pronouns_antecedent():
  crows = {t.name: t for _, t, *_ in rendered_fixture_rows("crows_pairs", None)}
  anti = next(r for r in fixture_rows("crows_pairs", None) if r["stereo_antistereo"] == 1)
  # antistereo: the less stereotyping sentence (`sent_less`) is the one that repeats a
  # stereotype.
  assert crows["numbered stereotype pick"].apply(anti).target == "2"
  wino = {t.name: t for _, t, *_ in rendered_fixture_rows("wino_bias", "type2_anti")}
  row = fixture_rows("wino_bias", "type2_anti")[0]
  assert wino["who is the pronoun"].apply(row).target == "the assistant"


def test_mixture_holds_a_twin_of_every_choice_prompt_of_the_bias_datasets():
  names = set(dict(catalog.mixture_rates("bias_fairness_eval_score_eval")))
  expected = set()
  for key in KEYS:
    for t in raw_templates(*key)["templates"].values():
      if t["answer_choices"]:
        expected.add(catalog.task_name(key[0], key[1], t["name"]) + "_score_eval")
  assert names == expected
  assert not any(
    n.startswith(("crows", "jigsaw", "wino")) for n, _ in catalog.mixture_rates("t0pp_train")
  )

"""The question-answering slice of the T0 training catalogue (tasks/catalog/t0_qa.yaml).

Multiple-choice, extractive and closed-book QA datasets, all trained on by T0, T0+ and T0++.
These tests pin down what training relies on: each dataset's spec, prompts that render every
offline fixture row (written in the Hugging Face schema) without a missing field, and targets of
the original-task prompts that are the gold answer, whichever way the answer is encoded
(ClassLabel int, answer string, `answerKey` letter, "1"/"2"/"3" string, span lists, KILT output).
"""

import os
import re

import pytest

from catalog_helpers import (
  catalog_specs,
  dataset_ids,
  fixture_rows as _rows,
  prompts_path as _prompts_path,
  rendered_fixture_rows,
  TASKS,
)
from t0jax.prompts import load_templates_file

CATALOG = TASKS / "catalog" / "t0_qa.yaml"
TRAIN_MIXTURES = ["t0_train", "t0p_train", "t0pp_train"]
MIN_PROMPTS = 3
MIXING_CAP = 500_000


def _pick(options, index):
  return options[index]


# Per dataset: cluster, the HF top-level fields, and how to read the gold answer of a fixture row:
#   gold_text  -> the correct answer's text (None for an unlabelled row), for multiple choice;
#   gold_index -> the index of the correct answer choice, for fixed choice words (wiki_qa);
#   answers    -> the set of acceptable targets (None when unanswerable), for free-form answers.
MC, EX, CB = "multiple_choice_qa", "extractive_qa", "closed_book_qa"
DATASETS = {
  ("cos_e", "v1.11"): dict(
    cluster=MC,
    fields={
      "id",
      "question",
      "choices",
      "answer",
      "abstractive_explanation",
      "extractive_explanation",
    },
    gold_text=lambda r: r["answer"],
  ),
  ("cosmos_qa", None): dict(
    cluster=MC,
    fields={"id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label"},
    gold_text=lambda r: (
      None
      if r["label"] == -1
      else _pick([r["answer0"], r["answer1"], r["answer2"], r["answer3"]], r["label"])
    ),
  ),
  ("dream", None): dict(
    cluster=MC,
    fields={"id", "dialogue_id", "dialogue", "question", "choice", "answer"},
    gold_text=lambda r: r["answer"],
  ),
  ("qasc", None): dict(
    cluster=MC,
    fields={
      "id",
      "question",
      "choices",
      "answerKey",
      "fact1",
      "fact2",
      "combinedfact",
      "formatted_question",
    },
    gold_text=lambda r: (
      r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])] if r["answerKey"] else None
    ),
  ),
  ("quail", None): dict(
    cluster=MC,
    fields={
      "id",
      "context_id",
      "question_id",
      "domain",
      "metadata",
      "context",
      "question",
      "question_type",
      "answers",
      "correct_answer_id",
    },
    gold_text=lambda r: r["answers"][r["correct_answer_id"]],
  ),
  ("quarel", None): dict(
    cluster=MC,
    fields={
      "id",
      "answer_index",
      "logical_forms",
      "logical_form_pretty",
      "world_literals",
      "question",
    },
    gold_text=lambda r: _pick(
      [r["world_literals"]["world1"][0], r["world_literals"]["world2"][0]], r["answer_index"]
    ),
  ),
  ("quartz", None): dict(
    cluster=MC,
    fields={
      "id",
      "question",
      "choices",
      "answerKey",
      "para",
      "para_id",
      "para_anno",
      "question_anno",
    },
    gold_text=lambda r: r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])],
  ),
  ("sciq", None): dict(
    cluster=MC,
    fields={"question", "distractor1", "distractor2", "distractor3", "correct_answer", "support"},
    gold_text=lambda r: r["correct_answer"],
  ),
  ("social_i_qa", None): dict(
    cluster=MC,
    fields={"context", "question", "answerA", "answerB", "answerC", "label"},
    gold_text=lambda r: (
      _pick([r["answerA"], r["answerB"], r["answerC"]], int(r["label"]) - 1) if r["label"] else None
    ),
  ),
  ("wiki_hop", "original"): dict(
    cluster=MC,
    fields={"id", "question", "answer", "candidates", "supports", "annotations"},
    gold_text=lambda r: r["answer"],
  ),
  ("wiqa", None): dict(
    cluster=MC,
    fields={
      "question_stem",
      "question_para_step",
      "answer_label",
      "answer_label_as_choice",
      "choices",
      "metadata_question_id",
      "metadata_graph_id",
      "metadata_para_id",
      "metadata_question_type",
      "metadata_path_len",
    },
    gold_text=lambda r: r["choices"]["text"][
      r["choices"]["label"].index(r["answer_label_as_choice"])
    ],
  ),
  **{
    ("adversarial_qa", sub): dict(
      cluster=EX,
      fields={"id", "title", "context", "question", "answers", "metadata"},
      answers=lambda r: set(r["answers"]["text"]) or None,
    )
    for sub in ("dbidaf", "dbert", "droberta")
  },
  **{
    ("duorc", sub): dict(
      cluster=EX,
      fields={"plot_id", "plot", "title", "question_id", "question", "answers", "no_answer"},
      # The only original prompt that serves unanswerable questions must decline to answer.
      answers=lambda r: {"No answer"} if r["no_answer"] else set(r["answers"]),
    )
    for sub in ("SelfRC", "ParaphraseRC")
  },
  ("ropes", None): dict(
    cluster=EX,
    fields={"id", "background", "situation", "question", "answers"},
    answers=lambda r: set(r["answers"]["text"]) or None,
  ),
  ("quoref", None): dict(
    cluster=EX,
    fields={"id", "question", "context", "title", "url", "answers"},
    answers=lambda r: set(r["answers"]["text"]) or None,
  ),
  ("kilt_tasks", "hotpotqa"): dict(
    cluster=CB,
    fields={"id", "input", "meta", "output"},
    answers=lambda r: {o["answer"] for o in r["output"] if o["answer"]} or None,
  ),
  ("wiki_qa", None): dict(
    cluster=CB,
    fields={"question_id", "question", "document_title", "answer", "label"},
    gold_index=lambda r: r["label"],
  ),
}
# The installed tensorflow_datasets builders whose features are the HF fields, unrenamed.
TFDS_SOURCES = {
  ("cos_e", "v1.11"): "cos_e:0.0.1",
  ("cosmos_qa", None): "cosmos_qa:1.0.0",
  ("qasc", None): "qasc:0.1.0",
}
# Extractive fixtures whose `answers` carry character offsets into `context`.
SPAN_DATASETS = [("adversarial_qa", s) for s in ("dbidaf", "dbert", "droberta")] + [
  ("quoref", None)
]

KEYS = sorted(DATASETS, key=str)
IDS = dataset_ids(KEYS)
MC_KEYS = [k for k in KEYS if DATASETS[k]["cluster"] == MC]
MC_IDS = dataset_ids(MC_KEYS)


def _catalog():
  return catalog_specs(CATALOG)


def _templates(key):
  return load_templates_file(_prompts_path(*key)).templates


def _original(key):
  return {tid: t for tid, t in _templates(key).items() if t.metadata.original_task}


def _letter_marks(letter, text):
  # "(C) sunlight", "A. oxygen", "B) text", "A: more": the letter must label the gold answer.
  return re.compile(rf"(^|\s)\(?{letter}[.):]\)?\s+{re.escape(text)}(\s|$)", re.M)


def test_catalogue_holds_exactly_the_t0_qa_datasets():
  assert set(_catalog()) == set(DATASETS)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_spec_trains_in_all_three_mixtures_with_hf_names_and_counts(key):
  spec = _catalog()[key]
  assert spec["hf"]["path"] == key[0] and spec["hf"].get("name") == key[1]
  assert spec["cluster"] == DATASETS[key]["cluster"]
  assert spec["mixtures"] == TRAIN_MIXTURES
  assert spec["train_split"] == "train"
  assert all(isinstance(n, int) and n > 0 for n in spec["splits"].values())
  assert spec["eval_splits"] == ["validation"] and {"train", "validation"} <= set(spec["splits"])
  assert not spec.get("manual_dir", False)
  # Mixing rates need no per-prompt cap for any of these datasets.
  assert spec["splits"]["train"] < MIXING_CAP


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_tfds_source_only_where_verified(key):
  assert _catalog()[key].get("tfds") == TFDS_SOURCES.get(key)
  assert "tfds_fields" not in _catalog()[key]


@pytest.mark.parametrize(
  "key", sorted(TFDS_SOURCES, key=str), ids=[k[0] for k in sorted(TFDS_SOURCES, key=str)]
)
def test_tfds_builder_features_are_the_hf_fields(key, tmp_path):
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")
  import tensorflow_datasets as tfds

  name, version = _catalog()[key]["tfds"].split(":")
  builder = tfds.builder_cls(name)(version=version, data_dir=str(tmp_path))
  assert str(builder.version) == version
  features = builder.info.features
  assert set(features.keys()) == DATASETS[key]["fields"]
  if key == ("cosmos_qa", None):  # ClassLabel '0'..'3' decodes to HF's int label
    assert list(features["label"].names) == ["0", "1", "2", "3"]
  if key == ("qasc", None):  # a sequence of dicts, which TFDS yields as a dict of lists like HF
    assert set(features["choices"].feature.keys()) == {"text", "label"}


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_prompt_file_names_its_dataset_with_enough_well_formed_prompts(key):
  loaded = load_templates_file(_prompts_path(*key))
  assert (loaded.dataset, loaded.subset) == key
  templates = loaded.templates
  assert len(templates) >= MIN_PROMPTS
  assert _original(key), "at least one prompt must pose the dataset's own task"
  assert len(set(loaded.names)) == len(loaded.names)
  for tid, t in templates.items():
    assert t.id == tid
    assert t.metadata.languages == ("en",) and t.metadata.metrics, t.name
    if t.answer_choices is not None:
      assert t.metadata.metrics == ("Accuracy",), t.name
    elif t.metadata.original_task and DATASETS[key]["cluster"] != MC:
      assert t.metadata.metrics == ("Squad",), t.name


@pytest.mark.parametrize("key", MC_KEYS, ids=MC_IDS)
def test_multiple_choice_prompts_mix_listed_and_unlisted_choices(key):
  flags = {
    t.metadata.choices_in_prompt for t in _original(key).values() if t.answer_choices is not None
  }
  assert flags == {True, False}


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_fixture_rows_follow_the_hf_schema(key):
  rows = _rows(*key)
  assert len(rows) == 3
  for row in rows:
    assert set(row) == DATASETS[key]["fields"]
  spec = DATASETS[key]
  if "gold_text" in spec:  # the gold answer sits at two or more different choice positions
    text_choice_prompts = [
      t
      for t in _original(key).values()
      if t.answer_choices is not None
      and spec["gold_text"](rows[0]) in t.get_answer_choices(rows[0])
    ]
    choices_per_row = [text_choice_prompts[0].get_answer_choices(row) for row in rows]
    positions = {
      choices.index(spec["gold_text"](row))
      for row, choices in zip(rows, choices_per_row)
      if spec["gold_text"](row)
    }
    assert len(positions) >= 2 or key == ("sciq", None)  # sciq's gold is always the last choice
  if "gold_index" in spec:
    assert len({spec["gold_index"](row) for row in rows}) == 2


@pytest.mark.parametrize(
  "key", SPAN_DATASETS, ids=[f"{d}/{s}" if s else d for d, s in SPAN_DATASETS]
)
def test_fixture_answer_offsets_point_at_the_answer_text(key):
  for row in _rows(*key):
    answers = row["answers"]
    assert len(answers["text"]) == len(answers["answer_start"])
    for text, start in zip(answers["text"], answers["answer_start"]):
      assert row["context"][start : start + len(text)] == text


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_every_template_renders_the_fixtures_without_missing_fields(key):
  for _, template, _, _, rendered in rendered_fixture_rows(*key):
    if rendered is None:
      continue
    assert rendered.input and rendered.target
    if rendered.choices is not None:
      assert rendered.target in rendered.choices, (template.name, rendered.target)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_original_prompt_targets_are_the_gold_answer(key):
  spec = DATASETS[key]
  for row in _rows(*key):
    for tid, template in _original(key).items():
      rendered = template.apply(row)
      if "gold_text" in spec:
        gold = spec["gold_text"](row)
      elif "gold_index" in spec:
        gold = spec["gold_index"](row)
      else:
        gold = spec["answers"](row)
      if gold is None:
        assert rendered is None, f"{template.name!r} renders a target for an unlabelled row"
        continue
      if rendered is None:  # e.g. a prompt written only for answerable questions
        continue
      if "answers" in spec:
        assert rendered.target in gold, (template.name, rendered.target)
      elif "gold_index" in spec:
        assert rendered.choices.index(rendered.target) == gold, template.name
      elif rendered.target == gold:
        assert gold in rendered.choices
      else:  # a letter: it must label the gold answer in the rendered input
        assert re.fullmatch(r"[A-H]", rendered.target), (template.name, rendered.target)
        assert _letter_marks(rendered.target, gold).search(rendered.input), (
          f"{template.name!r}: letter {rendered.target} does not label {gold!r}"
        )


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_prompts_flagged_choices_in_prompt_show_every_choice(key):
  for template in _templates(key).values():
    for row in _rows(*key):
      rendered = template.apply(row)
      if rendered is None or rendered.choices is None:
        continue
      if template.metadata.choices_in_prompt:
        missing = [c for c in rendered.choices if c.lower() not in rendered.input.lower()]
        assert not missing, f"{template.name!r} says it lists its choices but omits {missing}"


def test_wiki_qa_choice_words_match_the_label_meaning():
  # label 1 means the sentence answers the question, so choice 1 must be the affirmative word.
  row = _rows("wiki_qa", None)[0]
  for template in _original(("wiki_qa", None)).values():
    negative, positive = template.get_answer_choices(row)
    assert (negative.lower(), positive.lower()) in {("no", "yes"), ("false", "true")}


def test_sciq_listed_position_of_the_answer_varies_but_is_stable():
  # The gold answer is always the last HF choice; the prompts rotate the listed order by a
  # function of the question, so the model cannot learn "the answer comes last".
  template = next(t for t in _templates(("sciq", None)).values() if t.name == "letter of answer")
  rows = _rows("sciq", None)
  letters = [template.apply(row).target for row in rows]
  assert len(set(letters)) >= 2
  assert letters == [template.apply(row).target for row in rows]

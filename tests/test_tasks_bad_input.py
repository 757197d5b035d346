"""Bad data and bad catalogues: skipped and counted, or refused with a message naming the culprit."""

import logging
import os
import uuid

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import pytest  # noqa: E402
import yaml  # noqa: E402

import t0jax.catalog as catalog  # noqa: E402
from t0jax.catalog import registry, testing  # noqa: E402
from t0jax.catalog.testing import template  # noqa: E402
from t0jax.data import settings, skips  # noqa: E402

SEQ = {"inputs": 256, "targets": 32}


def _dataset(name, **kw):
  entry = {
    "dataset": name,
    "hf": {"path": name},
    "splits": {"train": 4, "validation": 4},
    "train_split": "train",
    "eval_splits": ["validation"],
    "mixtures": ["t0_train"],
  }
  entry.update(kw)
  return entry


@pytest.fixture
def toy(tmp_path):
  """A registered one-dataset catalogue whose rows are partly broken, read from JSONL."""
  name = f"toy_{uuid.uuid4().hex[:8]}"
  rows = [
    {"text": "good one", "extra": "x", "label": 1, "word": "yes"},
    {"text": "no extra field", "label": 0, "word": "no"},
    {"text": "odd target", "extra": "y", "label": 1, "word": "maybe"},
    {"text": "fine", "extra": "z", "label": 0, "word": "no"},
  ]
  templates = [
    template("uses extra", "{{ text }} {{ extra }} ||| {{ answer_choices[label] }}", "no ||| yes"),
    template("word target", "{{ text }} ||| {{ word }}", "no ||| yes"),
  ]
  root = testing.write_catalog(str(tmp_path / "cat"), [_dataset(name)], {(name, None): templates})
  for split in ("train", "validation"):
    testing.write_jsonl(str(tmp_path / "data" / name / f"{split}.jsonl"), rows)
  settings.set_data_dir(str(tmp_path / "data"))
  infos = catalog.register_catalog(catalog.load_catalog(root), catalog.DEMO_VOCABULARY)
  yield name
  registry.unregister([i.name for i in infos])
  settings.reset()


def test_examples_lacking_a_field_are_skipped_counted_and_reported_once(toy, caplog):
  task = catalog.get_task_or_mixture(f"{toy}_uses_extra")
  with caplog.at_level(logging.WARNING, logger="t0jax.data"):
    first = list(task.get_dataset(SEQ, split="train", shuffle=False).as_numpy_iterator())
    again = list(task.get_dataset(SEQ, split="train", shuffle=False).as_numpy_iterator())
  assert len(first) == len(again) == 3
  assert catalog.skip_counts()[task.name]["missing_field:extra"] == 2  # one per pass
  warnings = [r.getMessage() for r in caplog.records if task.name in r.getMessage()]
  assert len(warnings) == 1
  assert "'uses extra'" in warnings[0] and "'extra'" in warnings[0] and "1 skipped" in warnings[0]


def test_training_examples_whose_target_is_not_a_choice_are_kept_and_counted(toy):
  task = catalog.get_task_or_mixture(f"{toy}_word_target")
  targets = [
    ex["targets_pretokenized"]
    for ex in task.get_dataset(SEQ, split="train", shuffle=False).as_numpy_iterator()
  ]
  assert targets == [b"yes", b"no", b"maybe", b"no"]
  assert catalog.skip_counts()[task.name] == {"target_not_in_choices": 1}


def test_score_eval_marks_a_target_outside_the_choices_with_answer_idx_minus_one(toy):
  task = catalog.get_task_or_mixture(f"{toy}_word_target_score_eval")
  examples = list(task.get_dataset(SEQ, split="validation", shuffle=False).as_numpy_iterator())
  assert [int(ex["answer_idx"]) for ex in examples] == [1, 0, -1, 0]
  assert [int(ex["idx"]) for ex in examples] == [0, 1, 2, 3]
  assert catalog.skip_counts()[task.name]["target_not_in_choices"] == 1


def test_a_template_that_applies_to_nothing_is_logged_as_an_error_not_raised(toy, caplog):
  settings.set_data_dir(None)
  spec = catalog.task_info(f"{toy}_uses_extra").dataset
  from t0jax.data.source import load_template, render_examples

  tmpl = load_template(catalog.get_task_or_mixture(f"{toy}_uses_extra").source.prompt)
  with caplog.at_level(logging.ERROR, logger="t0jax.data"):
    out = list(render_examples("lonely_task", tmpl, [(0, {"text": "a", "label": 0})], False))
  assert out == [] and spec.dataset == toy
  assert any("produced no example" in r.getMessage() for r in caplog.records)
  skips.reset()
  assert "lonely_task" not in catalog.skip_counts()


# ---- malformed catalogues ------------------------------------------------------------------


def _write(tmp_path, datasets, templates=None, name="bad.yaml"):
  key_templates = (
    templates
    if templates is not None
    else {
      (d["dataset"], d.get("subset")): [template("p", "{{ text }} ||| {{ label }}")]
      for d in datasets
    }
  )
  return testing.write_catalog(str(tmp_path), datasets, key_templates, file_name=name)


@pytest.mark.parametrize(
  "change, message",
  [
    (dict(splits=None), r"missing or malformed `splits`"),
    (dict(hf=None), r"missing `hf:"),
    (dict(mixtures=["t0_trian"]), r"unknown mixture 't0_trian'; known mixtures: t0_train"),
    (
      dict(train_split="training"),
      r"split 'training' .* is not among `splits` \(train, validation\)",
    ),
    (dict(eval_splits=["dev"]), r"split 'dev' .* is not among `splits`"),
    (dict(train_split=None), r"it is in mixture 't0_train' but has no `train_split`"),
    (dict(colour="blue"), r"unknown key\(s\) \['colour'\]"),
  ],
)
def test_malformed_dataset_specs_name_the_file_and_the_dataset(tmp_path, change, message):
  entry = _dataset("broken")
  for key, value in change.items():
    entry.pop(key, None) if value is None else entry.__setitem__(key, value)
  _write(tmp_path, [entry])
  with pytest.raises(catalog.CatalogError, match=r"bad\.yaml: dataset broken: " + message):
    catalog.load_catalog(str(tmp_path))


def test_a_dataset_without_its_prompts_file_names_the_expected_path(tmp_path):
  _write(tmp_path, [_dataset("lonely", subset="part")], templates={})
  expected = os.path.join("prompts", "lonely", "part", "templates.yaml")
  with pytest.raises(
    catalog.CatalogError,
    match=r"bad\.yaml: dataset lonely/part: its prompts file .*"
    + expected.replace("/", ".")
    + " does not exist",
  ):
    catalog.load_catalog(str(tmp_path))


def test_a_dataset_defined_in_two_files_is_refused(tmp_path):
  _write(tmp_path, [_dataset("twice")], name="a.yaml")
  _write(tmp_path, [_dataset("twice")], name="b.yaml")
  with pytest.raises(
    catalog.CatalogError, match=r"b\.yaml: dataset twice is already defined in .*a\.yaml"
  ):
    catalog.load_catalog(str(tmp_path))


def test_invalid_yaml_and_wrong_shapes_name_the_file(tmp_path):
  os.makedirs(tmp_path / "catalog")
  (tmp_path / "catalog" / "x.yaml").write_text("datasets: [unclosed\n")
  with pytest.raises(catalog.CatalogError, match=r"x\.yaml: not valid YAML"):
    catalog.load_catalog(str(tmp_path))
  (tmp_path / "catalog" / "x.yaml").write_text(yaml.safe_dump({"dataset": "oops"}))
  with pytest.raises(catalog.CatalogError, match=r"x\.yaml: expected a mapping with a `datasets:`"):
    catalog.load_catalog(str(tmp_path))


def test_a_prompts_file_for_another_dataset_is_refused(tmp_path):
  _write(tmp_path, [_dataset("mine")], templates={("mine", None): [template("p", "{{ a }} ||| b")]})
  path = tmp_path / "prompts" / "mine" / "templates.yaml"
  path.write_text(path.read_text().replace("dataset: mine", "dataset: theirs"))
  with pytest.raises(catalog.CatalogError, match=r"dataset mine: .* says it is for theirs"):
    catalog.load_catalog(str(tmp_path))


def test_prompt_names_that_sanitize_to_the_same_task_name_are_refused(tmp_path):
  name = f"clash_{uuid.uuid4().hex[:6]}"
  _write(
    tmp_path,
    [_dataset(name)],
    templates={
      (name, None): [template("is it?", "{{ a }} ||| b"), template("is it!", "{{ a }} ||| c")]
    },
  )
  with pytest.raises(
    catalog.CatalogError, match=r"prompt 'is it!' .* already taken by prompt 'is it\?'"
  ):
    catalog.register_catalog(catalog.load_catalog(str(tmp_path)), catalog.DEMO_VOCABULARY)
  assert not any(i.name.startswith(name) for i in registry.all_task_infos())  # all or nothing

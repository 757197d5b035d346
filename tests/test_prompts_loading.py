"""Loading templates.yaml files in the promptsource format, and the errors for bad files."""

import os
import textwrap

import pytest

from t0jax.prompts import (
  DatasetTemplates,
  Rendered,
  Template,
  TemplateFormatError,
  TemplateMetadata,
  TemplateNotFoundError,
  TemplateSyntaxError,
  load_templates,
  load_templates_dir,
  load_templates_file,
)
from t0jax.prompts import render

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "prompts")
NLI_FILE = os.path.join(FIXTURES, "toy_nli", "templates.yaml")


def write(tmp_path, text, relative="templates.yaml"):
  path = tmp_path / relative
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(textwrap.dedent(text), encoding="utf-8")
  return str(path)


def test_promptsource_tagged_file_loads_with_ids_names_and_metadata_in_file_order():
  loaded = load_templates_file(NLI_FILE)
  assert (loaded.dataset, loaded.subset, loaded.path) == ("toy_nli", None, NLI_FILE)
  assert loaded.names == ["claim check", "what follows", "yes or no"]
  claim = loaded.by_name("claim check")
  assert claim.id == "0b6a2f1e-3c52-4d0e-9a4f-5f3e2d1c7a01"
  assert loaded.templates[claim.id] is claim
  assert claim.answer_choices == "True ||| Neither ||| False"
  assert claim.reference == "Three-way question written for the t0jax tests."
  assert claim.metadata == TemplateMetadata(
    original_task=True, choices_in_prompt=True, metrics=("Accuracy",), languages=("en",)
  )
  assert loaded.by_name("what follows").answer_choices is None


def test_loaded_fixture_templates_render_promptsource_style_multiline_sources():
  loaded = load_templates_file(NLI_FILE)
  example = {"premise": "The shop opens at nine.", "hypothesis": "The shop opens.", "label": 0}
  assert loaded.by_name("claim check").apply(example) == Rendered(
    input='The shop opens at nine.\nTaking only the text above as true, is the claim '
    '"The shop opens." true, false, or neither?',
    target="True",
    choices=["True", "Neither", "False"],
  )
  assert loaded.by_name("what follows").apply(example) == Rendered(
    input="Write a sentence that must be true if this one is: The shop opens at nine.",
    target="The shop opens.",
    choices=None,
  )
  assert loaded.by_name("what follows").apply({**example, "label": 2}) is None


def test_plain_untagged_mappings_load_like_tagged_ones(tmp_path):
  path = write(
    tmp_path,
    """\
        dataset: hand_written
        subset: v1
        templates:
          first:
            name: ask
            jinja: "{{ q }} ||| {{ a }}"
            metadata: {original_task: true, metrics: [Accuracy]}
          second:
            name: minimal
            jinja: "{{ q }} ||| yes"
        """,
  )
  loaded = load_templates_file(path)
  assert (loaded.dataset, loaded.subset) == ("hand_written", "v1")
  ask = loaded.by_name("ask")
  assert (ask.id, ask.reference, ask.answer_choices) == ("first", "", None)
  assert ask.metadata == TemplateMetadata(True, None, ("Accuracy",), ())
  assert loaded.by_name("minimal").metadata == TemplateMetadata()


def test_directory_loading_walks_the_tree_and_keys_by_dataset_and_subset():
  by_key = load_templates_dir(FIXTURES)
  assert list(by_key) == [("toy_nli", None), ("toy_qa", "extractive")]
  assert all(isinstance(value, DatasetTemplates) for value in by_key.values())
  assert [(c.dataset, c.subset) for c in load_templates(FIXTURES)] == list(by_key)
  assert [c.dataset for c in load_templates(NLI_FILE)] == ["toy_nli"]


def test_loading_parses_but_does_not_compile_templates(monkeypatch):
  render._compiled.cache_clear()
  compiled = []
  monkeypatch.setattr(render._ENV, "from_string", lambda *a, **k: compiled.append(a))
  load_templates_dir(FIXTURES)
  assert compiled == []


@pytest.mark.parametrize(
  "text, message",
  [
    ("dataset: [unclosed\n", "not valid YAML"),
    ("", "empty file"),
    ("- a\n- b\n", "got list"),
    ("templates: {}\n", "missing top-level `dataset`"),
    ("dataset: d\ntemplates: [a, b]\n", "`templates` must be a mapping"),
    ("dataset: d\n", "`templates` must be a mapping"),
    ("dataset: d\ntemplate: {}\n", "unknown key(s) 'template'"),
    (
      "dataset: d\ntemplates:\n  x: !Template {name: n}\n",
      "template 'n' (id x) is missing `jinja`",
    ),
    ("dataset: d\ntemplates:\n  x: {jinja: 'a ||| b'}\n", "template 'x' is missing `name`"),
    (
      "dataset: d\ntemplates:\n  x: {name: n, jinja: 'a', answer_choice: 'y'}\n",
      "unknown key(s) 'answer_choice'",
    ),
    ("dataset: d\ntemplates:\n  x: {name: n, jinja: 'a', id: y}\n", "differs from its key"),
    (
      "dataset: d\ntemplates:\n  x: {name: n, jinja: a, answer_choices: [p, q]}\n",
      "`answer_choices` must be a Jinja string",
    ),
    (
      "dataset: d\ntemplates:\n  x: {name: n, jinja: a, metadata: {original_task: maybe}}\n",
      "`original_task` must be true, false or null",
    ),
    (
      "dataset: d\ntemplates:\n  x: {name: n, jinja: a, metadata: {metrics: Accuracy}}\n",
      "`metrics` must be a list of strings",
    ),
    ("dataset: d\ntemplates:\n  x: !TemplateMetadata {name: n, jinja: a}\n", "tagged !Template"),
    (
      "dataset: d\ntemplates:\n  x: {name: n, jinja: a}\n  y: {name: n, jinja: b}\n",
      "two templates are named 'n' (ids x and y)",
    ),
    (
      "dataset: d\ntemplates:\n  x: {name: n, jinja: a}\n  x: {name: m, jinja: b}\n",
      "duplicate key 'x'",
    ),
  ],
)
def test_badly_formed_file_is_rejected_with_an_error_naming_the_file(tmp_path, text, message):
  path = write(tmp_path, text)
  with pytest.raises(TemplateFormatError) as caught:
    load_templates_file(path)
  assert str(caught.value).startswith(path + ":")
  assert message in str(caught.value)


def test_unsafe_yaml_tags_are_refused_not_executed(tmp_path):
  path = write(tmp_path, "dataset: !!python/object/apply:os.system ['echo pwned']\ntemplates: {}\n")
  with pytest.raises(TemplateFormatError, match="not valid YAML"):
    load_templates_file(path)


def test_jinja_syntax_error_is_reported_at_load_with_file_template_and_line(tmp_path):
  path = write(
    tmp_path,
    """\
        dataset: d
        templates:
          abc-123: !Template
            name: broken one
            jinja: "line one\\n{% if label %}{{ text }} ||| x"
        """,
  )
  with pytest.raises(TemplateSyntaxError) as caught:
    load_templates_file(path)
  message = str(caught.value)
  assert "template 'broken one' (id abc-123)" in message and path in message
  assert "line 2" in message and "endif" in message


def test_syntax_error_in_answer_choices_is_reported_at_load(tmp_path):
  path = write(
    tmp_path,
    "dataset: d\ntemplates:\n  i: {name: n, jinja: 'a', answer_choices: '{{ options | join( }}'}\n",
  )
  with pytest.raises(TemplateSyntaxError, match=r"template 'n' \(id i\).*`answer_choices`"):
    load_templates_file(path)


def test_source_broken_only_by_the_truncation_rewrite_gets_an_explanation():
  with pytest.raises(TemplateSyntaxError, match="promptsource's truncation rewrites"):
    Template(id="i", name="trim", jinja="{{- text -}} ||| x")


def test_same_dataset_and_subset_in_two_files_is_an_error_naming_both(tmp_path):
  first = write(tmp_path, "dataset: d\nsubset: s\ntemplates: {}\n", "a/templates.yaml")
  second = write(tmp_path, "dataset: d\nsubset: s\ntemplates: {}\n", "b/templates.yaml")
  with pytest.raises(TemplateFormatError) as caught:
    load_templates_dir(tmp_path)
  assert first in str(caught.value) and second in str(caught.value)


def test_missing_paths_and_empty_directories_are_clear_errors(tmp_path):
  with pytest.raises(TemplateNotFoundError, match="no such templates file"):
    load_templates(tmp_path / "nope.yaml")
  with pytest.raises(TemplateNotFoundError, match="no templates.yaml file"):
    load_templates(tmp_path)


def test_unknown_template_name_lists_close_matches_and_available_names():
  with pytest.raises(TemplateNotFoundError, match=r"Did you mean: 'claim check'.*Available"):
    load_templates_file(NLI_FILE).by_name("claim chek")


def test_numeric_subset_written_without_quotes_is_read_as_text(tmp_path):
  path = write(tmp_path, "dataset: story_cloze\nsubset: 2016\ntemplates: {}\n")
  assert load_templates_file(path).subset == "2016"

"""What the per-slice catalogue tests (tests/test_catalog_*.py) share: where the catalogue's
files are and how to read them without going through the prompt engine, so the tests check the
files independently of the code that uses them."""

import functools
import json
import pathlib

import jinja2
import jinja2.meta
import yaml

TASKS = pathlib.Path(__file__).resolve().parents[1] / "tasks"


def dataset_ids(keys):
  """pytest ids for (dataset, subset) keys: `dataset/subset` or `dataset`."""
  return [f"{d}/{s}" if s else d for d, s in keys]


@functools.lru_cache(maxsize=None)
def _catalog_file(path):
  with open(path) as f:
    return {(spec["dataset"], spec.get("subset")): spec for spec in yaml.safe_load(f)["datasets"]}


def catalog_specs(path):
  """The entries of one catalogue file, keyed by (dataset, subset)."""
  return _catalog_file(str(path))


def prompts_path(dataset, subset):
  return TASKS / "prompts" / dataset / (subset or "") / "templates.yaml"


def fixture_rows(dataset, subset):
  """The offline fixture of a dataset: a list of rows in the Hugging Face schema."""
  path = TASKS / "fixtures" / (f"{dataset}__{subset}.jsonl" if subset else f"{dataset}.jsonl")
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class _TaggedLoader(yaml.SafeLoader):
  """Reads the promptsource tags as plain mappings, to check metadata independently of the
  engine."""


for _tag in ("!Template", "!TemplateMetadata"):
  _TaggedLoader.add_constructor(
    _tag, lambda loader, node: loader.construct_mapping(node, deep=True)
  )


def raw_templates(dataset, subset):
  """A templates.yaml as plain data: {"dataset": ..., "templates": {id: {...}}}."""
  with open(prompts_path(dataset, subset)) as f:
    return yaml.load(f, Loader=_TaggedLoader)


def jinja_fields(*sources):
  """Top-level names the Jinja sources read (the injected choices and globals aside)."""
  env = jinja2.Environment()
  used = set()
  for source in sources:
    if source:
      used |= jinja2.meta.find_undeclared_variables(env.parse(source))
  return used - {"answer_choices", "zip", "range"}


def rendered_fixture_rows(dataset, subset):
  """Every template of a dataset applied to every fixture row, as a list of
  (template id, template, row index, row, rendered or None). Fails the calling test when a
  template reads a field the HF schema lacks, raises on a row, or applies to no row at all."""
  import pytest
  from t0jax.prompts import MissingFieldError, TemplateError, load_templates_file

  rows = fixture_rows(dataset, subset)
  out = []
  for tid, template in load_templates_file(prompts_path(dataset, subset)).templates.items():
    applied = 0
    for i, row in enumerate(rows):
      try:
        rendered = template.apply(dict(row))
      except MissingFieldError as e:
        pytest.fail(f"{tid} ({template.name!r}) needs a field the HF schema lacks: {e}")
      except TemplateError as e:
        pytest.fail(f"{tid} ({template.name!r}) fails on fixture row {i}: {e}")
      applied += rendered is not None
      out.append((tid, template, i, row, rendered))
    assert applied, f"{tid} ({template.name!r}) applies to no fixture row"
  return out


def check_choices_in_prompt_flags(dataset, subset):
  """A template whose metadata says `choices_in_prompt` shows every answer choice in its
  rendered input, on every fixture row it applies to."""
  raw = raw_templates(dataset, subset)["templates"]
  for tid, template, _, _, rendered in rendered_fixture_rows(dataset, subset):
    if rendered is None or not raw[tid]["metadata"]["choices_in_prompt"]:
      continue
    shown = rendered.input.lower()
    missing = [c for c in rendered.choices if c.lower() not in shown]
    assert not missing, (
      f"{tid} ({template.name!r}) claims its choices are in the prompt but omits {missing}"
    )

"""Load prompt templates written in the promptsource file format (`templates.yaml`).

A checkout's `promptsource/templates/` tree loads as it is: `!Template` / `!TemplateMetadata`
tagged mappings are read by a *safe* YAML loader that knows exactly those two tags, and plain
untagged mappings are accepted too so that files can be written by hand. Loading only parses the
Jinja sources (to report syntax errors with file and template at once); compilation waits for the
first `apply` and is cached, which keeps a catalogue of many files quick to import.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from typing import Any

import yaml

from t0jax.prompts import render
from t0jax.prompts.errors import TemplateFormatError, TemplateNotFoundError
from t0jax.prompts.render import Rendered

TEMPLATES_FILENAME = "templates.yaml"
_FILE_KEYS = ("dataset", "subset", "templates")
# `task_template` appears in a few promptsource files and means nothing to promptsource either.
_TEMPLATE_KEYS = ("answer_choices", "id", "jinja", "metadata", "name", "reference", "task_template")
_METADATA_KEYS = ("choices_in_prompt", "languages", "metrics", "original_task")


@dataclasses.dataclass(frozen=True)
class TemplateMetadata:
  original_task: bool | None = None
  choices_in_prompt: bool | None = None
  metrics: tuple[str, ...] = ()
  languages: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Template:
  """One prompt. Constructing it checks the Jinja syntax; `origin` (the file) is only used in
  error messages."""

  id: str
  name: str
  jinja: str
  answer_choices: str | None = None
  reference: str = ""
  metadata: TemplateMetadata = TemplateMetadata()
  origin: str = dataclasses.field(default="", compare=False, repr=False)

  def __post_init__(self):
    render.check_syntax(self)

  def apply(
    self, example: Mapping, *, require_target: bool = True, aliases: Mapping[str, str] | None = None
  ) -> Rendered | None:
    """Rendered input/target/choices, or None if the template does not apply to `example`.
    Raises MissingFieldError when the template uses a field the example lacks."""
    return render.apply_template(self, example, require_target=require_target, aliases=aliases)

  def apply_parts(self, example: Mapping, aliases: Mapping[str, str] | None = None) -> list:
    """What promptsource's `Template.apply` returns: the stripped `|||` parts."""
    return render.apply_parts(self, example, aliases)

  def get_answer_choices(
    self, example: Mapping, aliases: Mapping[str, str] | None = None
  ) -> list[str] | None:
    return render.get_answer_choices(self, example, aliases)


@dataclasses.dataclass(frozen=True)
class DatasetTemplates:
  """The templates of one dataset (and subset), in file order, keyed by template id."""

  dataset: str
  subset: str | None
  templates: dict[str, Template]
  path: str

  @property
  def names(self) -> list[str]:
    return [template.name for template in self.templates.values()]

  def by_name(self, name: str) -> Template:
    for template in self.templates.values():
      if template.name == name:
        return template
    close = difflib.get_close_matches(name, self.names, n=3)
    hint = f" Did you mean: {', '.join(map(repr, close))}?" if close else ""
    raise TemplateNotFoundError(
      f"{self.path}: no template named {name!r} for "
      f"{_dataset_label(self.dataset, self.subset)}.{hint} "
      f"Available: {', '.join(map(repr, self.names)) or 'none'}."
    )


def _dataset_label(dataset: str, subset: str | None) -> str:
  return dataset if subset is None else f"{dataset}/{subset}"


class _Tagged(dict):
  """A mapping that carried a YAML tag, so the validator can tell `!Template` from metadata."""

  def __init__(self, tag: str, items: dict):
    super().__init__(items)
    self.tag = tag


class _TemplatesLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
  """The safe loader, plus promptsource's two tags and an error on duplicate keys (which plain
  YAML silently resolves by keeping the last)."""

  def construct_mapping(self, node, deep=False):
    if isinstance(node, yaml.MappingNode):
      self.flatten_mapping(node)
      seen: dict[Any, int] = {}
      for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
          key = key_node.value
          if key in seen:
            raise yaml.constructor.ConstructorError(
              None,
              None,
              f"duplicate key {key!r} (first used on line {seen[key]})",
              key_node.start_mark,
            )
          seen[key] = key_node.start_mark.line + 1
    return super().construct_mapping(node, deep=deep)


def _tag_constructor(tag: str):
  def construct(loader: _TemplatesLoader, node: yaml.Node) -> _Tagged:
    return _Tagged(tag, loader.construct_mapping(node, deep=True))

  return construct


for _tag in ("!Template", "!TemplateMetadata"):
  _TemplatesLoader.add_constructor(_tag, _tag_constructor(_tag))


def _fail(path: str, message: str):
  raise TemplateFormatError(f"{path}: {message}")


def _check_keys(path: str, where: str, mapping: Mapping, allowed: tuple[str, ...]) -> None:
  unknown = [str(key) for key in mapping if key not in allowed]
  if unknown:
    _fail(
      path,
      f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
      f"allowed keys: {', '.join(allowed)}.",
    )


def _optional_str(path: str, where: str, key: str, value: Any, default: str | None) -> str | None:
  if value is None:
    return default
  if isinstance(value, bool) or not isinstance(value, (str, int, float)):
    _fail(path, f"{where}: `{key}` must be a string, got {type(value).__name__} {value!r}.")
  # Unquoted YAML like `subset: 2016` arrives as a number; the name is still meant as text.
  return str(value)


def _str_tuple(path: str, where: str, key: str, value: Any) -> tuple[str, ...]:
  if value is None:
    return ()
  if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
    _fail(path, f"{where}: metadata `{key}` must be a list of strings, got {value!r}.")
  return tuple(value)


def _optional_bool(path: str, where: str, key: str, value: Any) -> bool | None:
  if value is not None and not isinstance(value, bool):
    _fail(path, f"{where}: metadata `{key}` must be true, false or null, got {value!r}.")
  return value


def _metadata(path: str, where: str, raw: Any) -> TemplateMetadata:
  if raw is None:
    return TemplateMetadata()
  tag = getattr(raw, "tag", "!TemplateMetadata")
  if not isinstance(raw, Mapping) or tag != "!TemplateMetadata":
    _fail(
      path,
      f"{where}: `metadata` must be a mapping (tagged !TemplateMetadata or plain) "
      f"with keys {', '.join(_METADATA_KEYS)}.",
    )
  _check_keys(path, f"{where}: metadata", raw, _METADATA_KEYS)
  return TemplateMetadata(
    original_task=_optional_bool(path, where, "original_task", raw.get("original_task")),
    choices_in_prompt=_optional_bool(
      path, where, "choices_in_prompt", raw.get("choices_in_prompt")
    ),
    metrics=_str_tuple(path, where, "metrics", raw.get("metrics")),
    languages=_str_tuple(path, where, "languages", raw.get("languages")),
  )


def _template(path: str, key: Any, raw: Any) -> Template:
  where = f"template {key!r}"
  if not isinstance(raw, Mapping) or getattr(raw, "tag", "!Template") != "!Template":
    _fail(
      path,
      f"{where} must be a mapping (tagged !Template or plain) with keys "
      f"{', '.join(_TEMPLATE_KEYS[:-1])}; got {type(raw).__name__}.",
    )
  name = _optional_str(path, where, "name", raw.get("name"), None)
  if name is not None:
    where = f"template {name!r} (id {key})"
  _check_keys(path, where, raw, _TEMPLATE_KEYS)
  for required in ("name", "jinja"):
    if not raw.get(required):
      _fail(path, f"{where} is missing `{required}` (or it is empty).")
  if not isinstance(raw["jinja"], str):
    _fail(path, f"{where}: `jinja` must be a string, got {type(raw['jinja']).__name__}.")
  template_id = _optional_str(path, where, "id", raw.get("id"), str(key))
  if template_id != str(key):
    _fail(
      path,
      f"{where}: `id` {template_id!r} differs from its key {str(key)!r} in "
      f"`templates`; make them equal.",
    )
  choices = raw.get("answer_choices")
  if choices is not None and not isinstance(choices, str):
    _fail(
      path,
      f"{where}: `answer_choices` must be a Jinja string with choices separated by "
      f"'|||' (e.g. 'no ||| yes') or null, got {type(choices).__name__}.",
    )
  return Template(
    id=template_id,
    name=name,
    jinja=raw["jinja"],
    answer_choices=choices,
    reference=_optional_str(path, where, "reference", raw.get("reference"), ""),
    metadata=_metadata(path, where, raw.get("metadata")),
    origin=path,
  )


def load_templates_file(path: str | os.PathLike) -> DatasetTemplates:
  """Read one promptsource `templates.yaml` file."""
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as stream:
      data = yaml.load(stream, Loader=_TemplatesLoader)  # a safe loader: see the class
  except OSError as error:
    raise TemplateNotFoundError(f"{path}: cannot read templates file: {error.strerror}.") from None
  except yaml.YAMLError as error:
    raise TemplateFormatError(f"{path}: not valid YAML for a templates file: {error}") from None
  except UnicodeDecodeError as error:
    raise TemplateFormatError(f"{path}: not UTF-8 text: {error}") from None
  if not isinstance(data, Mapping):
    _fail(
      path,
      "expected a mapping with keys `dataset`, `subset` (optional) and `templates`, "
      f"got {'an empty file' if data is None else type(data).__name__}.",
    )
  _check_keys(path, "the file", data, _FILE_KEYS)
  dataset = _optional_str(path, "the file", "dataset", data.get("dataset"), None)
  if not dataset:
    _fail(path, "missing top-level `dataset` (the Hugging Face dataset name).")
  subset = _optional_str(path, "the file", "subset", data.get("subset"), None)
  raw_templates = data.get("templates")
  if not isinstance(raw_templates, Mapping):
    _fail(
      path,
      "`templates` must be a mapping of template id -> template, got "
      f"{'nothing' if raw_templates is None else type(raw_templates).__name__}.",
    )
  templates: dict[str, Template] = {}
  ids_by_name: dict[str, str] = {}
  for key, raw in raw_templates.items():
    template = _template(path, key, raw)
    if template.name in ids_by_name:
      _fail(
        path,
        f"two templates are named {template.name!r} (ids "
        f"{ids_by_name[template.name]} and {template.id}); template names must be "
        f"unique within a file.",
      )
    ids_by_name[template.name] = template.id
    templates[template.id] = template
  return DatasetTemplates(dataset=dataset, subset=subset, templates=templates, path=path)


def load_templates_dir(root: str | os.PathLike) -> dict[tuple[str, str | None], DatasetTemplates]:
  """Every `templates.yaml` under `root` (walked in sorted order), keyed by (dataset, subset)."""
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise TemplateNotFoundError(f"{root}: not a directory of templates.")
  found: dict[tuple[str, str | None], DatasetTemplates] = {}
  for directory, subdirs, files in os.walk(root):
    subdirs.sort()
    if TEMPLATES_FILENAME not in files:
      continue
    loaded = load_templates_file(os.path.join(directory, TEMPLATES_FILENAME))
    key = (loaded.dataset, loaded.subset)
    if key in found:
      raise TemplateFormatError(
        f"{loaded.path}: templates for {_dataset_label(*key)} are also defined in "
        f"{found[key].path}; keep one file per dataset and subset."
      )
    found[key] = loaded
  if not found:
    raise TemplateNotFoundError(f"{root}: no {TEMPLATES_FILENAME} file anywhere below it.")
  return found


def load_templates(path: str | os.PathLike) -> list[DatasetTemplates]:
  """A `templates.yaml` file, or a directory tree of them (in sorted path order)."""
  if os.path.isdir(path):
    return list(load_templates_dir(path).values())
  if not os.path.exists(path):
    raise TemplateNotFoundError(f"{os.fspath(path)}: no such templates file or directory.")
  return [load_templates_file(path)]

"""Apply promptsource templates to examples: sandboxed Jinja with promptsource's semantics.

The rules (REFERENCE.md sections 4 and 10) and the two places where t0jax deliberately differs
from promptsource are listed in docs/prompts.md. In short:
- field names with `-` become `_` first (t-zero did this before every `apply`), and fields the
  hub renamed since 2021 can be aliased back to the names the templates use;
- every `{{ ... }}` is truncated to 2048 characters by the same textual rewrite promptsource uses;
- a literal `|||` in a top-level string field is replaced by promptsource's own placeholder
  string before rendering (templates such as multi_news's split on it) and restored in each part;
- `apply_parts` returns promptsource's list of stripped parts; `apply_template` turns it into
  t-zero's (input, target) pair: exactly two parts, else the template does not apply;
- undefined keys and elements render as Jinja's default Undefined does (promptsource's
  environment); differences: a top-level field the example lacks raises `MissingFieldError`
  instead of rendering as an empty string, and `choice` is deterministic per (template, example).
"""

from __future__ import annotations

import collections
import contextvars
import dataclasses
import functools
import hashlib
import json
import random
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from t0jax.prompts.errors import (
  MissingFieldError,
  ReservedFieldError,
  TemplateError,
  TemplateRenderError,
  TemplateSecurityError,
  TemplateSyntaxError,
)

SEPARATOR = "|||"
TRUNCATE_CHARS = 2048
RESERVED_FIELD = "answer_choices"
# promptsource's own stand-in for a literal "|||" of the example until the rendered text has been
# split. It must be this exact string: real templates (multi_news) split their text on it.
PIPE_PLACEHOLDER = "3ed2dface8203c4c9dfb1a5dc58e41e0"
_TRUNCATE_REWRITE = f" | string | truncate({TRUNCATE_CHARS}) }}}}"


@dataclasses.dataclass(frozen=True)
class Rendered:
  """One prompted example: the model input, the target ("" for an unlabeled example rendered
  with `require_target=False`) and the rendered answer choices (None when the template has
  none)."""

  input: str
  target: str
  choices: list[str] | None


def truncating_source(jinja_source: str) -> str:
  """promptsource's variable truncation, reproduced as the same textual rewrite of every `}}` so
  that outputs (and the rare templates the rewrite breaks) match promptsource exactly."""
  return jinja_source.replace("}}", _TRUNCATE_REWRITE)


def describe(template: Any) -> str:
  origin = getattr(template, "origin", "")
  return f"template {template.name!r} (id {template.id})" + (f" in {origin}" if origin else "")


def skip_reason(error: MissingFieldError) -> str:
  return f"missing_field:{error.field}"


class _UndefinedValue(jinja2.UndefinedError):
  def __init__(self, message: str, name: Any, top_level: bool):
    super().__init__(message)
    self.name = name
    self.top_level = top_level


# Top-level fields a render used but the example lacks (see `_PromptsourceUndefined`).
_MISSING: contextvars.ContextVar[list] = contextvars.ContextVar("t0jax_missing_fields")


class _PromptsourceUndefined(jinja2.Undefined):
  """Jinja's default Undefined, which promptsource renders with: an absent key or element
  prints as "", is false and iterates as empty (real templates index past a list's end).

  Two additions: an attribute the sandbox blocked stops the render (SecurityError), and a
  top-level field the example lacks is noted when its value is used (printed, tested,
  compared, iterated), so the example is skipped and counted (MissingFieldError) instead of
  rendered with a hole: that is a schema mismatch (see `field_aliases`), not a conditional.
  `default` and `is defined` look at the type only, so they still handle absent fields.
  """

  __slots__ = ()

  def _note(self) -> None:
    if self._undefined_exception is not jinja2.UndefinedError:
      raise self._undefined_exception(self._undefined_message)
    if self._undefined_obj is missing:
      _MISSING.get([]).append(self._undefined_name)

  def __str__(self):
    self._note()
    return ""

  def __bool__(self):
    self._note()
    return False

  def __iter__(self):
    self._note()
    return iter(())

  def __len__(self):
    self._note()
    return 0

  def __eq__(self, other):
    self._note()
    return type(self) is type(other)

  def __ne__(self, other):
    return not self.__eq__(other)

  __hash__ = jinja2.Undefined.__hash__

  def _fail_with_undefined_error(self, *args, **kwargs):
    if self._undefined_exception is not jinja2.UndefinedError:
      raise self._undefined_exception(self._undefined_message)
    raise _UndefinedValue(
      self._undefined_message, self._undefined_name, self._undefined_obj is missing
    )


# jinja2 binds each failing operator (`+`, `[...]`, `.attr`, ...) to the base class's function
# object, so the override above is invisible to them until they are rebound here.
for _name, _value in list(vars(jinja2.Undefined).items()):
  if (
    _value is jinja2.Undefined._fail_with_undefined_error and _name != "_fail_with_undefined_error"
  ):
    setattr(_PromptsourceUndefined, _name, _PromptsourceUndefined._fail_with_undefined_error)


class _ChoiceRandom:
  """The random source of the `choice` filter for one render.

  promptsource draws from Python's global RNG, so a dataset changes between runs. Here the seed
  is a hash of the template id, the part being rendered and the example's content: the same
  example always gets the same pick, different examples (and templates) get different ones.
  The hash is computed only when a template actually calls `choice`.
  """

  __slots__ = ("_template_id", "_part", "_example", "_random")

  def __init__(self, template_id: str, part: str, example: Mapping):
    self._template_id, self._part, self._example = template_id, part, example
    self._random: random.Random | None = None

  def choice(self, items: list):
    if self._random is None:
      key = "\x00".join((self._template_id, self._part, _canonical_json(self._example)))
      digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
      self._random = random.Random(int.from_bytes(digest[:8], "big"))
    return self._random.choice(items)


def _canonical_json(value: Any) -> str:
  try:
    return json.dumps(
      value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default
    )
  except TypeError:  # keys of mixed types cannot be sorted
    return repr(value)


def _json_default(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode("utf-8", "replace")
  if hasattr(value, "tolist"):  # numpy scalars and arrays from TFDS
    return value.tolist()
  if isinstance(value, (set, frozenset)):
    return sorted(map(repr, value))
  return repr(value)


_CHOICE_RANDOM: contextvars.ContextVar[_ChoiceRandom] = contextvars.ContextVar("t0jax_choice")


@jinja2.pass_context  # stops Jinja from constant-folding `[...] | choice` into the compiled code
def _choice(_context, items):
  sequence = list(items)
  if not sequence:
    raise ValueError("the `choice` filter was given an empty sequence")
  return _CHOICE_RANDOM.get().choice(sequence)


def _most_frequent(items) -> list:
  counts = collections.Counter(items)  # keeps first-appearance order among ties
  if not counts:
    return []
  top = max(counts.values())
  return [item for item, count in counts.items() if count == top]


def _make_environment() -> SandboxedEnvironment:
  # Not the immutable sandbox: real promptsource templates build lists with `.append`/`.update`.
  # Examples are copied before rendering, so such mutations never reach the caller's data.
  env = SandboxedEnvironment(undefined=_PromptsourceUndefined, autoescape=False)
  env.filters["choice"] = _choice
  env.filters["most_frequent"] = _most_frequent
  env.globals["zip"] = zip
  return env


_ENV = _make_environment()


@functools.lru_cache(maxsize=None)
def _compiled(source: str, truncate: bool) -> jinja2.Template:
  return _ENV.from_string(truncating_source(source) if truncate else source)


def check_syntax(template: Any) -> None:
  """Parse (without compiling) the template's `jinja` and `answer_choices`; raise a
  TemplateSyntaxError naming the template, its file and Jinja's message with line."""
  for part, source, truncate in (
    ("jinja", template.jinja, True),
    ("answer_choices", template.answer_choices, False),
  ):
    if source is None:
      continue
    try:
      _ENV.parse(truncating_source(source) if truncate else source)
    except jinja2.TemplateSyntaxError as error:
      hint = "Fix the Jinja source."
      if truncate and _parses(source):
        hint = (
          "The source itself parses, but promptsource's truncation rewrites every "
          "'}}' as ' | string | truncate(2048) }}', which breaks it: do not use "
          "'-}}' whitespace control or '}}' inside strings and {% %} tags."
        )
      raise TemplateSyntaxError(
        f"{describe(template)}: Jinja syntax error in `{part}`, "
        f"line {error.lineno}: {error.message}. {hint}"
      ) from None


def fields_used(template: Any) -> set:
  """The top-level example fields the template's `jinja` and `answer_choices` read (names it
  sets itself, globals and `answer_choices` excluded), from the parsed source."""
  from jinja2 import meta, nodes

  used, assigned = set(), set()
  for source in (template.jinja, template.answer_choices):
    if source is not None:
      tree = _ENV.parse(source)
      used |= meta.find_undeclared_variables(tree)
      # Jinja counts a name set inside an `{% if %}` as possibly undeclared; a template
      # that assigns a name anywhere does not read it from the example.
      assigned |= {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
  return used - assigned - {RESERVED_FIELD} - set(_ENV.globals)


def _parses(source: str) -> bool:
  try:
    _ENV.parse(source)
  except jinja2.TemplateSyntaxError:
    return False
  return True


def prepare_example(example: Mapping, aliases: Mapping[str, Any] | None = None) -> dict:
  """The example as templates see it: top-level field names with `-` get `_` (promptsource's
  `removeHyphen`, which t-zero applied before every template), and each alias adds the field
  under the name the templates use when only today's name exists. An alias is
  {old name: today's name}, or {old name: {"field": today's name, "values": [old id of each
  of today's ids]}} when the hub also reordered a ClassLabel (ids outside the list, such as
  an unlabeled -1, are kept)."""
  prepared = {
    (key.replace("-", "_") if isinstance(key, str) else key): value
    for key, value in example.items()
  }
  for old, new in (aliases or {}).items():
    field, values = (new, None) if isinstance(new, str) else (new["field"], new["values"])
    if old in prepared or field not in prepared:
      continue
    value = prepared[field]
    if values is not None and isinstance(value, int) and 0 <= value < len(values):
      value = values[value]
    prepared[old] = value
  return prepared


def _copy(value: Any) -> Any:
  """A copy of a nested value, so that templates calling `.append` cannot modify the caller's
  example; bytes (as TFDS yields them) are decoded as UTF-8."""
  if isinstance(value, bytes):
    return value.decode("utf-8", "replace")
  if isinstance(value, Mapping):
    return {key: _copy(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_copy(item) for item in value]
  return value


def _protect(example: Mapping) -> dict:
  """promptsource's `_escape_pipe`: `|||` inside the example's top-level strings becomes the
  placeholder (nested strings are left as they are, as promptsource leaves them)."""
  protected = {}
  for key, value in example.items():
    value = _copy(value)
    if isinstance(value, str) and SEPARATOR in value:
      value = value.replace(SEPARATOR, PIPE_PLACEHOLDER)
    protected[key] = value
  return protected


def _restore(text: str) -> str:
  return text.replace(PIPE_PLACEHOLDER, SEPARATOR)


def _render(template: Any, part: str, context: dict, example: Mapping) -> str:
  source = template.jinja if part == "jinja" else template.answer_choices
  token = _CHOICE_RANDOM.set(_ChoiceRandom(template.id, part, example))
  missing_token = _MISSING.set([])
  try:
    text = _compiled(source, part == "jinja").render(context)
    if _MISSING.get():
      field = _MISSING.get()[0]
      raise _UndefinedValue(f"{field!r} is undefined", field, True)
    return text
  except _UndefinedValue as error:
    field = error.name if isinstance(error.name, str) else f"[{error.name!r}]"
    what = "field" if error.top_level else "key or element"
    fields = ", ".join(sorted(map(str, example))[:30]) or "none"
    raise MissingFieldError(
      template.name,
      field,
      f"{describe(template)} uses {what} {field!r} in `{part}`, which this example lacks "
      f"({error.message}). Example fields: {fields}. Skip this template for this example, "
      f"or fix the field name in the template.",
    ) from None
  except SecurityError as error:
    raise TemplateSecurityError(
      f"{describe(template)} was stopped by Jinja's sandbox in `{part}`: {error}. Templates "
      f"may only read the example's fields with ordinary string, list and dict operations."
    ) from None
  except TemplateError:
    raise
  except Exception as error:  # untrusted template code can fail in any way; name the template
    raise TemplateRenderError(
      f"{describe(template)} failed while rendering `{part}`: {type(error).__name__}: {error}"
    ) from error
  finally:
    _MISSING.reset(missing_token)
    _CHOICE_RANDOM.reset(token)


def _check_example(template: Any, example: Any) -> None:
  if not isinstance(example, Mapping):
    raise TemplateError(
      f"{describe(template)} was given a {type(example).__name__} as the "
      f"example; pass a mapping of field name -> value."
    )


def _choices(template: Any, protected: dict, example: Mapping) -> list[str] | None:
  if template.answer_choices is None:
    return None
  rendered = _render(template, "answer_choices", protected, example)
  return [_restore(choice.strip()) for choice in rendered.split(SEPARATOR)]


def get_answer_choices(
  template: Any, example: Mapping, aliases: Mapping[str, str] | None = None
) -> list[str] | None:
  """The template's answer choices rendered for `example` (None if it defines none)."""
  _check_example(template, example)
  example = prepare_example(example, aliases)
  return _choices(template, _protect(example), example)


def _parts_and_choices(template: Any, example: Mapping, aliases) -> tuple[list[str], list | None]:
  _check_example(template, example)
  example = prepare_example(example, aliases)
  if RESERVED_FIELD in example:
    raise ReservedFieldError(
      f"{describe(template)}: the example has a field named {RESERVED_FIELD!r}, a name "
      f"reserved for the template's rendered answer choices. Rename that field (e.g. in the "
      f"task's preprocessing) before applying templates."
    )
  protected = _protect(example)
  # promptsource injects the choices unprotected: a `|||` inside a choice splits the prompt.
  choices = _choices(template, protected, example)
  text = _render(template, "jinja", {**protected, RESERVED_FIELD: choices}, example)
  return [_restore(part).strip() for part in text.split(SEPARATOR)], choices


def apply_parts(
  template: Any, example: Mapping, aliases: Mapping[str, str] | None = None
) -> list[str]:
  """promptsource's `Template.apply`: the rendered text split on `|||`, each part stripped.
  `[""]` means the template does not apply; `[input, ""]` is an unlabeled example."""
  return _parts_and_choices(template, example, aliases)[0]


def apply_template(
  template: Any,
  example: Mapping,
  *,
  require_target: bool = True,
  aliases: Mapping[str, str] | None = None,
) -> Rendered | None:
  """t-zero's reading of `apply_parts`: the (input, target) pair, or None when the template does
  not apply to `example`.

  It does not apply when the input is empty or the render has more than two parts (t-zero
  dropped those), nor, with `require_target`, when the target is empty. With
  `require_target=False` an unlabeled example (a test split's label -1) renders its input with
  an empty target, as promptsource does, e.g. to score or preview it.
  """
  outcome, _ = _outcome(template, example, require_target, aliases)
  return outcome


def _outcome(template, example, require_target, aliases) -> tuple[Rendered | None, str | None]:
  parts, choices = _parts_and_choices(template, example, aliases)
  if not parts[0]:
    return None, "empty"
  if len(parts) > 2:
    return None, "extra_separator"
  target = parts[1] if len(parts) == 2 else ""
  if require_target and not target:
    return None, "unlabeled"
  return Rendered(input=parts[0], target=target, choices=choices), None


def apply_or_skip(
  template: Any,
  example: Mapping,
  *,
  require_target: bool = True,
  aliases: Mapping[str, str] | None = None,
) -> tuple[Rendered | None, str | None]:
  """`(rendered, None)`, or `(None, reason)` for callers that count why examples were skipped:
  `"missing_field:<name>"`, `"empty"` (the template rendered no input), `"unlabeled"` (no
  target, with `require_target`) or `"extra_separator"` (more than two `|||` parts). Other
  template errors still raise."""
  try:
    return _outcome(template, example, require_target, aliases)
  except MissingFieldError as error:
    return None, skip_reason(error)

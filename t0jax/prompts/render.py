"""Apply promptsource templates to examples: sandboxed Jinja with promptsource's semantics.

The rules (REFERENCE.md section 4) and the places where t0jax deliberately differs from
promptsource are listed in docs/prompts.md. In short:
- every `{{ ... }}` is truncated to 2048 characters by the same textual rewrite promptsource uses;
- a literal `|||` anywhere in the example (nested lists and dicts included) or in a rendered
  answer choice survives the split on `|||`;
- a missing field raises `MissingFieldError` instead of rendering as an empty string;
- `choice` is deterministic per (template, example); more than two `|||` parts keep the first two.
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

from t0jax.prompts.errors import (MissingFieldError, ReservedFieldError, TemplateError,
                                  TemplateRenderError, TemplateSecurityError, TemplateSyntaxError)

SEPARATOR = "|||"
TRUNCATE_CHARS = 2048
RESERVED_FIELD = "answer_choices"
# Stands in for a literal "|||" of the example until the rendered text has been split. Like
# promptsource's it is 32 characters without spaces, so truncation cuts text at the same places.
_PIPE_SENTINEL = "d199e0c50fd64aecb504849ac629ecd0"
_TRUNCATE_REWRITE = f" | string | truncate({TRUNCATE_CHARS}) }}}}"


@dataclasses.dataclass(frozen=True)
class Rendered:
    """One prompted example: the model input, the target (None only when the caller asked for
    input-only rendering) and the rendered answer choices (None when the template has none)."""
    input: str
    target: str | None
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


class _StrictFieldUndefined(jinja2.StrictUndefined):
    """StrictUndefined whose error remembers what was missing, for MissingFieldError."""
    __slots__ = ()

    def _fail_with_undefined_error(self, *args, **kwargs):
        if self._undefined_exception is not jinja2.UndefinedError:
            # The sandbox marks a blocked attribute with SecurityError: that must stay visible.
            raise self._undefined_exception(self._undefined_message)
        raise _UndefinedValue(self._undefined_message, self._undefined_name,
                              self._undefined_obj is missing)


# jinja2 binds each failing operator to the base class's function object, so the override above
# is invisible to `str()`, `+`, `==`, iteration... until they are rebound here.
for _cls in (jinja2.Undefined, jinja2.StrictUndefined):
    for _name, _value in list(vars(_cls).items()):
        _failing = _value is jinja2.Undefined._fail_with_undefined_error
        if _failing and _name != "_fail_with_undefined_error":
            setattr(_StrictFieldUndefined, _name, _StrictFieldUndefined._fail_with_undefined_error)


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
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                          default=_json_default)
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
    env = SandboxedEnvironment(undefined=_StrictFieldUndefined, autoescape=False)
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
    for part, source, truncate in (("jinja", template.jinja, True),
                                   ("answer_choices", template.answer_choices, False)):
        if source is None:
            continue
        try:
            _ENV.parse(truncating_source(source) if truncate else source)
        except jinja2.TemplateSyntaxError as error:
            hint = "Fix the Jinja source."
            if truncate and _parses(source):
                hint = ("The source itself parses, but promptsource's truncation rewrites every "
                        "'}}' as ' | string | truncate(2048) }}', which breaks it: do not use "
                        "'-}}' whitespace control or '}}' inside strings and {% %} tags.")
            raise TemplateSyntaxError(f"{describe(template)}: Jinja syntax error in `{part}`, "
                                      f"line {error.lineno}: {error.message}. {hint}") from None


def _parses(source: str) -> bool:
    try:
        _ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        return False
    return True


def _protect(value: Any) -> Any:
    """A copy of an example value with every `|||` inside strings replaced by the sentinel.

    Containers are copied even without a `|||`, so that templates calling `.append` cannot modify
    the caller's example; bytes (as TFDS yields them) are decoded as UTF-8.
    """
    if isinstance(value, str):
        return value.replace(SEPARATOR, _PIPE_SENTINEL) if SEPARATOR in value else value
    if isinstance(value, bytes):
        return _protect(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {key: _protect(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_protect(item) for item in value]
    return value


def _restore(text: str) -> str:
    return text.replace(_PIPE_SENTINEL, SEPARATOR)


def _render(template: Any, part: str, context: dict, example: Mapping) -> str:
    source = template.jinja if part == "jinja" else template.answer_choices
    token = _CHOICE_RANDOM.set(_ChoiceRandom(template.id, part, example))
    try:
        return _compiled(source, part == "jinja").render(context)
    except _UndefinedValue as error:
        field = error.name if isinstance(error.name, str) else f"[{error.name!r}]"
        what = "field" if error.top_level else "key or element"
        fields = ", ".join(sorted(map(str, example))[:30]) or "none"
        raise MissingFieldError(
            template.name, field,
            f"{describe(template)} uses {what} {field!r} in `{part}`, which this example lacks "
            f"({error.message}). Example fields: {fields}. Skip this template for this example, "
            f"or fix the field name in the template.") from None
    except SecurityError as error:
        raise TemplateSecurityError(
            f"{describe(template)} was stopped by Jinja's sandbox in `{part}`: {error}. Templates "
            f"may only read the example's fields with ordinary string, list and dict operations."
        ) from None
    except TemplateError:
        raise
    except Exception as error:  # untrusted template code can fail in any way; name the template
        raise TemplateRenderError(f"{describe(template)} failed while rendering `{part}`: "
                                  f"{type(error).__name__}: {error}") from error
    finally:
        _CHOICE_RANDOM.reset(token)


def _check_example(template: Any, example: Any) -> None:
    if not isinstance(example, Mapping):
        raise TemplateError(f"{describe(template)} was given a {type(example).__name__} as the "
                            f"example; pass a mapping of field name -> value.")


def _protected_choices(template: Any, protected: dict, example: Mapping) -> list[str] | None:
    if template.answer_choices is None:
        return None
    rendered = _render(template, "answer_choices", protected, example)
    return [choice.strip() for choice in rendered.split(SEPARATOR)]


def get_answer_choices(template: Any, example: Mapping) -> list[str] | None:
    """The template's answer choices rendered for `example` (None if it defines none)."""
    _check_example(template, example)
    choices = _protected_choices(template, _protect(example), example)
    return None if choices is None else [_restore(choice) for choice in choices]


def apply_template(template: Any, example: Mapping, *, require_target: bool = True
                   ) -> Rendered | None:
    """Render `example` with `template`; None when the template does not apply to it.

    It does not apply when the input part is empty, or (with `require_target`) when there is no
    non-empty target part. With `require_target=False` an input-only render returns
    `Rendered(input, None, choices)`, e.g. to score unlabeled test examples. Parts after the
    second `|||` are ignored.
    """
    _check_example(template, example)
    if RESERVED_FIELD in example:
        raise ReservedFieldError(
            f"{describe(template)}: the example has a field named {RESERVED_FIELD!r}, a name "
            f"reserved for the template's rendered answer choices. Rename that field (e.g. in the "
            f"task's preprocessing) before applying templates.")
    protected = _protect(example)
    choices = _protected_choices(template, protected, example)
    # Choices go in still protected, so a `|||` inside a choice cannot split the prompt.
    text = _render(template, "jinja", {**protected, RESERVED_FIELD: choices}, example)
    parts = text.split(SEPARATOR, 2)
    input_text = _restore(parts[0]).strip()
    target = _restore(parts[1]).strip() if len(parts) > 1 else ""
    if not input_text or (require_target and not target):
        return None
    return Rendered(input=input_text, target=target or None,
                    choices=None if choices is None else [_restore(c) for c in choices])


def apply_or_skip(template: Any, example: Mapping) -> tuple[Rendered | None, str | None]:
    """`(rendered, None)`, or `(None, reason)` with reason `"missing_field:<name>"` or `"empty"`,
    for callers that count why examples were skipped. Other template errors still raise."""
    try:
        rendered = apply_template(template, example)
    except MissingFieldError as error:
        return None, skip_reason(error)
    return (None, "empty") if rendered is None else (rendered, None)

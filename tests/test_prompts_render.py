"""Rendering rules of the promptsource format (REFERENCE.md section 4), one test per rule."""

import pickle

import pytest

from t0jax.prompts import (
  MissingFieldError,
  Rendered,
  ReservedFieldError,
  Template,
  TemplateError,
  TemplateRenderError,
  TemplateSecurityError,
  apply_or_skip,
)
from t0jax.prompts import render


def make(jinja, answer_choices=None, name="t", template_id="id-1"):
  return Template(id=template_id, name=name, jinja=jinja, answer_choices=answer_choices)


def test_rendered_text_splits_on_separator_into_stripped_input_and_target():
  rendered = make("  Q: {{ q }}  |||  {{ a }} \n").apply({"q": "why?", "a": "because"})
  assert rendered == Rendered(input="Q: why?", target="because", choices=None)


def test_answer_choices_are_split_stripped_and_injected_into_the_context():
  template = make("{{ text }} ||| {{ answer_choices[label] }}", "  bad|||  good  ")
  rendered = template.apply({"text": "Fine film.", "label": 1})
  assert rendered == Rendered(input="Fine film.", target="good", choices=["bad", "good"])
  assert template.get_answer_choices({"text": "x", "label": 0}) == ["bad", "good"]


def test_answer_choices_are_jinja_rendered_per_example():
  template = make("{{ q }} ||| {{ answer_choices[label] }}", "{{ options | join(' ||| ') }}")
  rendered = template.apply({"q": "Pick", "options": ["red", "blue", "green"], "label": 2})
  assert rendered.choices == ["red", "blue", "green"] and rendered.target == "green"


def test_template_without_answer_choices_reports_none():
  template = make("{{ q }} ||| {{ a }}")
  assert template.get_answer_choices({"q": "x", "a": "y"}) is None
  assert template.apply({"q": "x", "a": "y"}).choices is None


def test_each_variable_is_truncated_to_2048_characters_the_jinja_truncate_way():
  words = ["abcd"] * 500  # 2499 characters with the spaces
  rendered = make("{{ text }} ||| {{ label }}").apply({"text": " ".join(words), "label": "x"})
  # Jinja's truncate: keep 2045 characters, drop the last partial word, append "...".
  assert rendered.input == " ".join(["abcd"] * 409) + "..."


def test_truncation_leaves_2053_characters_alone_and_cuts_2054():
  template = make("{{ text }} ||| t")
  at_leeway = "x" * 2053
  assert template.apply({"text": at_leeway}).input == at_leeway
  # No space to cut at: the whole first 2045 characters are kept.
  assert template.apply({"text": "x" * 2054}).input == "x" * 2045 + "..."


def test_truncation_applies_per_expression_not_to_literal_text_or_whole_prompt():
  literal = "L" * 3000
  template = make(literal + " {{ a }} {{ b }} ||| t")
  rendered = template.apply({"a": "a" * 2000, "b": "b" * 2000})
  assert rendered.input == f"{literal} {'a' * 2000} {'b' * 2000}"


def test_non_string_values_are_stringified_before_truncation():
  rendered = make("{{ n }} {{ xs }} ||| {{ flag }}").apply({"n": 7, "xs": [1, 2], "flag": True})
  assert (rendered.input, rendered.target) == ("7 [1, 2]", "True")


def test_separator_inside_example_text_is_kept_literally():
  rendered = make("{{ text }} ||| {{ label }}").apply({"text": "a ||| b", "label": "c ||| d"})
  assert (rendered.input, rendered.target) == ("a ||| b", "c ||| d")


def test_separator_inside_example_text_is_the_promptsource_placeholder_while_rendering():
  # A multi_news-style template splits its documents on the placeholder, as promptsource's do.
  template = make(
    '{% for d in doc.split("' + render.PIPE_PLACEHOLDER + '||") %}[{{ d }}]{% endfor %} ||| ok'
  )
  assert template.apply({"doc": "one|||||two"}).input == "[one][two]"


def test_separator_inside_nested_example_values_splits_as_in_promptsource():
  # promptsource protects top-level strings only; the render then has four parts and t-zero
  # dropped such renders.
  template = make("{{ doc.title }} ||| {{ answers[0] }}")
  example = {"doc": {"title": "x|||y"}, "answers": ["p ||| q"]}
  assert template.apply_parts(example) == ["x", "y", "p", "q"]
  assert apply_or_skip(template, example) == (None, "extra_separator")


def test_rendered_choices_are_split_on_the_separator_and_restored():
  template = make("{{ q }} ||| {{ answer_choices[1] }}", "{{ a }} ||| {{ b }}")
  rendered = template.apply({"q": "Which?", "a": "left ||| right", "b": "up"})
  assert rendered.choices == ["left ||| right", "up"]
  assert rendered.target == "up"


def test_hyphenated_field_names_are_read_with_underscores():
  template = make("{{ label_coarse }} ||| {{ answer_choices[label_fine] }}", "a ||| b")
  assert template.apply({"label-coarse": "c", "label-fine": 1}) == Rendered("c", "b", ["a", "b"])


def test_aliases_give_templates_the_field_names_the_hub_has_since_renamed():
  template = make("{{ text }} ||| {{ label_coarse }}")
  example = {"text": "t", "coarse_label": 3}
  assert template.apply(example, aliases={"label_coarse": "coarse_label"}).target == "3"
  assert apply_or_skip(template, example) == (None, "missing_field:label_coarse")
  # An alias never hides a field the example really has.
  both = {"text": "t", "coarse_label": 3, "label_coarse": 4}
  assert template.apply(both, aliases={"label_coarse": "coarse_label"}).target == "4"


def test_unlabeled_example_renders_its_input_with_an_empty_target_as_promptsource_does():
  template = make("{{ text }} ||| {% if label != -1 %}{{ label }}{% endif %}")
  assert template.apply_parts({"text": "t", "label": -1}) == ["t", ""]
  assert template.apply({"text": "t", "label": -1}, require_target=False) == Rendered("t", "", None)
  assert apply_or_skip(template, {"text": "t", "label": -1}) == (None, "unlabeled")
  no_separator = make("{{ text }}{% if label != -1 %} ||| {{ label }}{% endif %}")
  assert no_separator.apply({"text": "t", "label": -1}, require_target=False).target == ""


def test_choice_filter_picks_an_item_deterministically_per_template_and_example():
  template = make("{{ ['A', 'B', 'C', 'D'] | choice }} {{ n }} ||| x")
  picks = [template.apply({"n": n}).input.split()[0] for n in range(40)]
  assert picks == [template.apply({"n": n}).input.split()[0] for n in range(40)]
  assert set(picks) <= {"A", "B", "C", "D"} and len(set(picks)) > 1
  other = make(template.jinja, template_id="id-2")
  assert [other.apply({"n": n}).input.split()[0] for n in range(40)] != picks


def test_choice_in_answer_choices_agrees_between_apply_and_get_answer_choices():
  template = make(
    "{{ n }} ||| {{ answer_choices[0] }}", "{{ ['yes', 'sure', 'right'] | choice }} ||| no"
  )
  for n in range(10):
    example = {"n": n}
    assert template.apply(example).choices == template.get_answer_choices(example)


def test_most_frequent_returns_all_items_tied_for_the_top_count_in_first_seen_order():
  template = make("{{ xs | most_frequent | join(',') }} ||| {{ ys | most_frequent }}")
  rendered = template.apply({"xs": ["b", "a", "c", "a", "b"], "ys": ["p", "q", "q"]})
  assert (rendered.input, rendered.target) == ("b,a", "['q']")


def test_zip_is_available_as_a_global():
  template = make("{% for k, v in zip(keys, values) %}{{ k }}={{ v }};{% endfor %} ||| ok")
  assert template.apply({"keys": ["a", "b"], "values": [1, 2]}).input == "a=1;b=2;"


def test_conditional_template_rendering_nothing_does_not_apply():
  template = make("{% if label == 0 %}{{ text }} ||| yes{% endif %}")
  assert template.apply({"text": "t", "label": 1}) is None
  assert template.apply({"text": "t", "label": 0}) == Rendered("t", "yes", None)


def test_empty_target_or_missing_separator_does_not_apply():
  with_empty_target = make("{{ text }} ||| {% if label != -1 %}{{ label }}{% endif %}")
  assert with_empty_target.apply({"text": "t", "label": -1}) is None
  assert make("{{ text }} only").apply({"text": "t"}) is None
  assert make("   ||| {{ text }}").apply({"text": "t"}) is None


def test_input_only_rendering_when_the_caller_does_not_require_a_target():
  template = make(
    "{{ text }} ||| {% if label != -1 %}{{ answer_choices[label] }}{% endif %}", "no ||| yes"
  )
  rendered = template.apply({"text": "t", "label": -1}, require_target=False)
  assert rendered == Rendered(input="t", target="", choices=["no", "yes"])


def test_a_render_with_more_than_two_parts_does_not_apply_as_t_zero_dropped_it():
  template = make("a ||| b ||| c ||| d")
  assert template.apply_parts({}) == ["a", "b", "c", "d"]
  assert template.apply({}) is None and template.apply({}, require_target=False) is None


def test_example_with_an_answer_choices_field_is_an_error_naming_the_template():
  template = make("{{ q }} ||| x", name="reserved check")
  with pytest.raises(ReservedFieldError, match=r"'reserved check'.*'answer_choices'"):
    template.apply({"q": "x", "answer_choices": ["a"]})


def test_missing_field_raises_missing_field_error_with_template_and_field():
  template = make("{{ premise }} ||| {{ hypothesis }}", name="needs both")
  with pytest.raises(MissingFieldError) as caught:
    template.apply({"premise": "p"})
  assert (caught.value.template_name, caught.value.field) == ("needs both", "hypothesis")
  assert "needs both" in str(caught.value) and "premise" in str(caught.value)
  restored = pickle.loads(pickle.dumps(caught.value))
  assert (restored.template_name, restored.field) == ("needs both", "hypothesis")


def test_missing_field_is_detected_in_conditions_comparisons_and_answer_choices():
  with pytest.raises(MissingFieldError, match="'label'"):
    make("{% if label %}a{% endif %} ||| b").apply({})
  with pytest.raises(MissingFieldError, match="'label'"):
    make("a ||| {% if label != -1 %}b{% endif %}").apply({})
  with pytest.raises(MissingFieldError) as caught:
    make("q ||| {{ answer_choices[0] }}", "{{ options | join('|||') }}").apply({})
  assert caught.value.field == "options"


def test_absent_nested_keys_and_elements_render_empty_as_in_promptsource():
  # promptsource renders with Jinja's default Undefined: real templates (imdb, piqa) index past
  # the end of a list and get an empty string.
  template = make("[{{ answers.text }}] [{{ xs[2] }}] ||| x")
  assert template.apply({"answers": {"start": [0]}, "xs": [1]}).input == "[] []"
  with pytest.raises(MissingFieldError):
    make("{{ answers.text.upper() }} ||| x").apply({"answers": {}})


def test_default_filter_and_defined_test_still_handle_absent_fields():
  template = make(
    "{{ title | default('untitled') }}{% if body is defined %} {{ body }}{% endif %} ||| x"
  )
  assert template.apply({}).input == "untitled"
  assert template.apply({"title": "T", "body": "B"}).input == "T B"


def test_apply_or_skip_reports_the_reason_an_example_was_skipped():
  template = make("{% if label != -1 %}{{ text }} ||| {{ label }}{% endif %}")
  assert apply_or_skip(template, {"text": "t", "label": 1}) == (Rendered("t", "1", None), None)
  assert apply_or_skip(template, {"text": "t", "label": -1}) == (None, "empty")
  assert apply_or_skip(template, {"text": "t"}) == (None, "missing_field:label")


@pytest.mark.parametrize(
  "jinja",
  [
    "{{ ''.__class__.__mro__ }} ||| x",
    "{{ cycler.__init__.__globals__ }} ||| x",
    "{{ text.__class__.__base__.__subclasses__() }} ||| x",
    "{{ '{0.__class__}'.format(text) }} ||| x",
  ],
)
def test_sandbox_blocks_attribute_escapes_with_a_clear_error(jinja):
  with pytest.raises(TemplateSecurityError, match=r"template 'escape'.*sandbox"):
    make(jinja, name="escape").apply({"text": "t"})


def test_ordinary_string_list_and_dict_operations_work_in_the_sandbox():
  jinja = (
    "{{ s.strip().split(',')[1:] | join('+') }} {{ s.replace('a', 'o') | trim | upper }} "
    "{{ s | lower | capitalize }} {{ s.startswith(' a') }} {{ xs[-1] }} {{ xs | length }} "
    "{{ xs | first }}{{ xs | last }} {{ d['k'] }}{{ d.k }} {{ 'ab' | list }} "
    "{% for i in range(2) %}{{ loop.index }}{% endfor %} "
    "{% set acc = [] %}{{ acc.append(xs[0]) or '' }}{{ acc }} ||| {{ ', '.join(xs) }}"
  )
  rendered = make(jinja).apply({"s": " a,b,c ", "xs": ["x", "y"], "d": {"k": "v"}})
  assert rendered.input == "b+c O,B,C  a,b,c  True y 2 xy vv ['a', 'b'] 12 ['x']"
  assert rendered.target == "x, y"


def test_templates_that_mutate_values_do_not_change_the_callers_example():
  example = {"xs": ["a"], "d": {"k": ["v"]}}
  make("{{ xs.append('b') or '' }}{{ d.k.append('w') or '' }}{{ xs }} ||| x").apply(example)
  assert example == {"xs": ["a"], "d": {"k": ["v"]}}


def test_bytes_values_are_decoded_as_utf8():
  assert make("{{ text }} ||| x").apply({"text": "caf\u00e9".encode()}).input == "caf\u00e9"


def test_runtime_failure_of_a_template_names_it():
  with pytest.raises(TemplateRenderError, match=r"template 'adds'.*TypeError"):
    make("{{ label + 'x' }} ||| y", name="adds").apply({"label": 1})


def test_example_must_be_a_mapping():
  with pytest.raises(TemplateError, match="mapping of field name"):
    make("{{ a }} ||| b").apply(["not", "a", "dict"])


def test_templates_compile_once_and_reuse_the_compiled_code():
  render._compiled.cache_clear()
  template = make("{{ q }} ||| {{ a }}", "x ||| y")
  for _ in range(3):
    template.apply({"q": "1", "a": "2"})
  assert render._compiled.cache_info().misses == 2  # jinja and answer_choices, once each

"""The demo's held-out story family: what makes it answerable (the gold ending continues with
the context's person) and that nothing of it leaks into training (no story data, prompt or
answer wording in any training mixture, control or ablation). Fast: no model."""

import os
import re

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import pytest  # noqa: E402

import t0jax.catalog as catalog  # noqa: E402
from t0jax.catalog.demo import controls, families, lexicon  # noqa: E402
from t0jax.prompts import apply_or_skip, load_templates_file  # noqa: E402

PROMPTS = os.path.join(catalog.demo.ROOT, "prompts")
HELD_IN = ("reviews", "news", "facts", "pairs", "people")


def _story_phrases() -> list:
  """Wording only the held-out family uses: its situations and endings without the person, its
  settings, and the literal text of its prompts."""
  phrases = [
    part.replace("{x} ", "").rstrip(".") for pair in lexicon.STORY_SITUATIONS for part in pair
  ]
  phrases += [s.rstrip(".") for s in lexicon.STORY_SETTINGS]
  story = load_templates_file(os.path.join(PROMPTS, "demo_story", "templates.yaml"))
  for template in story.templates.values():
    literal = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\|\|\|", "\n", template.jinja)
    phrases += [p.strip(" .:-") for p in literal.split("\n") if len(p.split()) >= 2]
  return [p for p in phrases if p]


def test_the_held_out_phrases_cover_every_story_prompt_and_situation():
  phrases = _story_phrases()
  assert "What happens next?".rstrip("?") in " ".join(phrases)
  assert "Pick the most sensible way to finish this story" in phrases
  assert "Complete the sentence" in phrases
  assert "missed the last bus home" in phrases and "called a taxi to get back" in phrases


def test_gold_ending_is_the_one_whose_person_the_context_mentions():
  for example in families.generate("story", "validation"):
    people = [e.split(" ")[0] for e in example["endings"]]
    rests = {e.split(" ", 1)[1] for e in example["endings"]}
    assert len(rests) == 1  # endings differ only in who acts
    assert len(set(people)) == len(people)
    mentioned = [p for p in people if re.search(rf"\b{p}\b", example["context"])]
    assert mentioned == [people[example["label"]]]


def test_gold_position_is_spread_over_the_choices():
  labels = [e["label"] for e in families.generate("story", "validation")]
  assert set(labels) == {0, 1, 2, 3}
  assert max(labels.count(k) for k in range(4)) < 0.45 * len(labels)


@pytest.mark.parametrize("family", HELD_IN)
def test_no_held_out_wording_in_held_in_data_or_prompts(family):
  """Every held-in prompt rendered on the first 300 training examples, and the prompt file
  itself, is free of the held-out family's wording."""
  phrases = [p.lower() for p in _story_phrases()]
  path = os.path.join(PROMPTS, f"demo_{family}", "templates.yaml")
  raw = open(path, encoding="utf-8").read().lower()
  assert not [p for p in phrases if p in raw]
  templates = load_templates_file(path).templates.values()
  for example in families.generate(family, "train")[:300]:
    for template in templates:
      rendered, _ = apply_or_skip(template, example, require_target=False)
      if rendered is None:
        continue
      text = " ".join(
        [rendered.input, rendered.target or ""] + list(rendered.choices or [])
      ).lower()
      leaked = [p for p in phrases if p in text]
      assert not leaked, (family, template.name, leaked)


def test_no_training_mixture_holds_a_story_task():
  mixtures = ["demo_train"] + list(controls.control_mixtures())
  for name in mixtures:
    datasets = {catalog.task_info(t).dataset.dataset for t, _ in catalog.mixture_rates(name)}
    assert "demo_story" not in datasets, name
    assert datasets <= {f"demo_{f}" for f in HELD_IN}, name


def test_story_is_held_out_by_the_catalogue_and_in_the_eval_mixture():
  spec = next(
    s for s in catalog.load_catalog(catalog.demo.ROOT).datasets if s.dataset == "demo_story"
  )
  assert spec.mixtures == ("demo_eval",) and spec.train_split is None
  names = [t for t, _ in catalog.mixture_rates("demo_heldout_score_eval")]
  assert sorted(names) == sorted(
    f"demo_story_{p}_score_eval"
    for p in ("what_happens_next", "sensible_ending", "complete_the_sentence")
  )


def test_control_and_ablation_mixtures_are_parts_of_demo_train_at_its_rates():
  rates = dict(catalog.mixture_rates("demo_train"))
  mixtures = controls.control_mixtures()
  control = mixtures["demo_only_reviews_train"]
  assert {catalog.task_info(t).dataset.dataset for t, _ in control} == {"demo_reviews"}
  assert len(control) == 5 and all(rates[t] == r for t, r in control)
  assert mixtures["demo_train_5_families"] == list(rates.items())
  assert mixtures["demo_train_1_families"] == control
  one = mixtures["demo_train_one_prompt"]
  assert len(one) == 5 and all(catalog.task_info(t).prompt.original_task for t, _ in one)
  assert catalog.get_task_or_mixture("demo_only_people_train") is not None


def test_evaluator_marks_held_out_datasets_from_the_catalogue():
  from t0jax.evaluate import evaluator

  assert evaluator.prompt_metadata("demo_story_complete_the_sentence_score_eval")["held_out"]
  assert not evaluator.prompt_metadata("demo_reviews_tone_score_eval")["held_out"]
  assert not evaluator.prompt_metadata("not_a_catalogue_task")["held_out"]


def test_dataset_chance_is_the_example_weighted_mean_over_original_task_prompts():
  from t0jax.evaluate import evaluator

  def prompt(dataset, chance, n, original=True, held_out=False):
    return {
      "dataset": dataset,
      "chance": chance,
      "original_task": original,
      "held_out": held_out,
      "metrics": {"num_examples": n},
    }

  prompts = {
    "a": prompt("story", 50.0, 100, held_out=True),
    "b": prompt("story", 25.0, 300, held_out=True),
    "c": prompt("story", 90.0, 50, original=False, held_out=True),
    "d": prompt("reviews", 50.0, 10),
  }
  datasets = evaluator._add_chance_and_held_out({"story": {}, "reviews": {}}, prompts)
  assert datasets["story"] == {"chance": 31.25, "held_out": True}
  assert datasets["reviews"] == {"chance": 50.0}

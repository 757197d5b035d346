"""The demo family: deterministic synthetic datasets, learnable held-in cues, its vocabulary and
mixtures that yield examples offline."""

import collections
import math
import os
import re

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import sentencepiece as spm  # noqa: E402

import t0jax.catalog as catalog  # noqa: E402
from t0jax.catalog.demo import families, lexicon  # noqa: E402

HELD_IN = {
  "reviews": ("text",),
  "news": ("text",),
  "facts": ("hypothesis",),
  "pairs": ("sentence2",),
}
SPECS = {s.dataset: s for s in catalog.load_catalog(catalog.demo.ROOT).datasets}


def test_generation_is_deterministic_and_the_catalogue_counts_match():
  for family, sizes in families.SIZES.items():
    first = families.generate(family, "validation")
    families.generate.cache_clear()
    assert families.generate(family, "validation") == first
    assert SPECS[f"demo_{family}"].splits == sizes
    assert len(families.generate(family, "train")) == sizes["train"]


def test_validation_never_repeats_a_training_example_and_labels_are_balanced():
  for family in HELD_IN:
    train = {families._key(e) for e in families.generate(family, "train")}
    validation = families.generate(family, "validation")
    assert not any(families._key(e) in train for e in validation)
    counts = collections.Counter(e["label"] for e in validation)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_unknown_split_names_the_family_and_its_splits():
  with pytest.raises(ValueError, match=r"'news' has no split 'test' \(splits: train, validation\)"):
    families.news("test")


def _words(example, fields):
  return re.findall(r"[a-z']+", " ".join(example[f] for f in fields).lower())


@pytest.mark.parametrize("family", sorted(HELD_IN))
def test_held_in_families_are_learnable_from_keywords(family):
  """A bag-of-words naive Bayes classifier, as a stand-in for a tiny model's easiest cue,
  must classify the validation split almost perfectly."""
  fields = HELD_IN[family]
  counts = collections.defaultdict(collections.Counter)
  priors = collections.Counter()
  for example in families.generate(family, "train"):
    counts[example["label"]].update(set(_words(example, fields)))
    priors[example["label"]] += 1
  vocab = set().union(*counts.values())

  def predict(example):
    words = set(_words(example, fields)) & vocab
    return max(
      priors,
      key=lambda c: (
        math.log(priors[c]) + sum(math.log((counts[c][w] + 1) / (priors[c] + 2)) for w in words)
      ),
    )

  validation = families.generate(family, "validation")
  accuracy = np.mean([predict(e) == e["label"] for e in validation])
  assert accuracy >= 0.97, f"{family}: {accuracy:.3f}"


def test_story_is_a_different_task_with_two_to_four_endings():
  examples = families.generate("story", "validation")
  assert {len(e["endings"]) for e in examples} == {2, 3, 4}
  assert all(0 <= e["label"] < len(e["endings"]) for e in examples)
  held_in = {SPECS[f"demo_{f}"].cluster for f in list(HELD_IN) + ["people"]}
  assert SPECS["demo_story"].cluster not in held_in


def test_every_family_has_three_to_five_prompts_in_promptsource_format():
  for spec in SPECS.values():
    assert 3 <= len(spec.prompts) <= 5, spec.label
    assert sum(p.original_task and p.has_choices for p in spec.prompts) >= 3


def test_shipped_vocabulary_has_t5_special_ids_and_covers_the_demo_text():
  sp = spm.SentencePieceProcessor(model_file=catalog.demo.VOCAB_PATH)
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
  assert sp.get_piece_size() == 896
  for family in families.SIZES:
    for example in families.generate(family, "validation")[:20]:
      text = " ".join(str(v) for v in example.values())
      assert 2 not in sp.encode(text), text


def test_prompted_inputs_are_short_with_a_spread_of_lengths():
  """Short enough for the demo's 128-token inputs (a cheap step), with some long tails."""
  task = catalog.get_task_or_mixture("demo_reviews_positive_or_negative")
  lengths = [
    len(ex["inputs"])
    for ex in task.get_dataset(None, split="train", shuffle=False).take(600).as_numpy_iterator()
  ]
  assert min(lengths) < 40 and max(lengths) > 120
  assert np.median(lengths) < 90  # most inputs are short, as in real data


def test_demo_train_mixture_yields_tokenized_examples_from_several_families():
  mixture = catalog.get_task_or_mixture("demo_train")
  ds = mixture.get_dataset(
    {"inputs": 256, "targets": 16}, split="train", shuffle=False, seed=0, copy_pretokenized=True
  )
  examples = list(ds.take(40).as_numpy_iterator())
  assert len(examples) == 40
  assert all(ex["targets"][-1] == 1 and len(ex["inputs"]) <= 256 for ex in examples)
  answers = {ex["targets_pretokenized"].decode() for ex in examples}
  assert answers & set(lexicon.NAMES), answers  # the copy prompts (who, subject, people)
  # answers of at least three families (sentiment, topic, entailment, paraphrase words)
  vocabularies = [
    {"No", "Yes", "negative", "positive", "one star", "five stars", "unhappy", "happy"},
    {
      "sports",
      "business",
      "science",
      "weather",
      "Sports",
      "Business",
      "Science",
      "Weather",
      "Sport",
      "Money",
    },
    {"supported", "not supported", "true", "false", "it follows", "it does not follow"},
    {"no", "yes", "different", "equivalent"},
  ]
  assert sum(bool(answers & v) for v in vocabularies) >= 3, answers


def test_demo_eval_score_eval_tasks_keep_each_input_with_all_its_choices():
  names = [t for t, _ in catalog.mixture_rates("demo_eval_score_eval")]
  assert any(n.startswith("demo_story_") for n in names)
  assert any(n.startswith("demo_reviews_") for n in names)
  checked = [n for n in names if n.startswith("demo_story_")] + [
    next(n for n in names if n.startswith("demo_facts_"))
  ]
  for name in checked:
    task = catalog.get_task_or_mixture(name)
    ds = task.get_dataset({"inputs": 512, "targets": 32}, split="validation", shuffle=False)
    examples = list(ds.take(8).as_numpy_iterator())
    assert [int(e["idx"]) for e in examples] == list(range(8))
    for e in examples:
      assert 0 <= e["answer_idx"] < len(e["choices"]) == len(e["choices_pretokenized"])
      assert list(e["choices"][e["answer_idx"]]) == list(e["targets"])

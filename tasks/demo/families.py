"""Deterministic generators of the demo family's datasets (`generator:` entries of demo.yaml).

Each public function takes a split name and returns that split's examples as dicts in a Hugging
Face style schema. Examples are seeded by (family, split), so every machine generates the same
data with no download; validation examples never repeat a training example.
"""

import functools
import json
import random
import zlib

from . import lexicon as L

SIZES = {
  "reviews": {"train": 4000, "validation": 200},
  "news": {"train": 4000, "validation": 200},
  "facts": {"train": 3000, "validation": 200},
  "pairs": {"train": 3000, "validation": 200},
  "people": {"train": 4000, "validation": 200},
  "story": {"train": 1000, "validation": 200},
}


def _fill(rng: random.Random, pattern: str, **fixed) -> str:
  values = dict(
    day=rng.choice(L.DAYS),
    color=rng.choice(L.COLORS),
    room=rng.choice(L.ROOMS),
    relative=rng.choice(L.RELATIVES),
    season=rng.choice(L.SEASONS),
    city=rng.choice(L.CITIES),
    n=rng.randint(2, 12),
    name=rng.choice(L.NAMES),
  )
  values.update(fixed)
  text = pattern.format(**values)
  return text[0].upper() + text[1:]


def _draw(rng: random.Random, patterns: list, k: int) -> list:
  """k patterns, without repeats until every pattern has been used once."""
  out = []
  while len(out) < k:
    out += rng.sample(patterns, min(len(patterns), k - len(out)))
  return out


def _num_fillers(rng: random.Random, longest: int) -> int:
  # Most inputs are short, some long: lengths spread from a few dozen to several hundred tokens.
  roll, third = rng.random(), max(4, longest // 3)
  if roll < 0.55:
    return rng.randint(0, 3)
  if roll < 0.88:
    return rng.randint(4, third)
  return rng.randint(third, max(third, longest))


def _review(rng: random.Random, label: int) -> dict:
  product = rng.choice(L.PRODUCTS)
  opener = rng.choice(L.POSITIVE_OPENERS if label else L.NEGATIVE_OPENERS)
  sentences = [opener.format(p=product)]
  sentences += [_fill(rng, p) for p in _draw(rng, L.REVIEW_FILLERS, _num_fillers(rng, 10))]
  if rng.random() < 0.7:
    sentences.append(rng.choice(L.POSITIVE_CLOSERS if label else L.NEGATIVE_CLOSERS))
  return {"product": product, "text": " ".join(sentences), "label": label}


def _news(rng: random.Random, label: int) -> dict:
  def topical(pattern):
    teams, companies = rng.sample(L.TEAMS, 2), rng.sample(L.COMPANIES, 2)
    return _fill(
      rng,
      pattern,
      team=teams[0],
      team2=teams[1],
      company=companies[0],
      company2=companies[1],
      score=f"{rng.randint(1, 5)}-{rng.randint(0, 4)}",
      animal=rng.choice(L.ANIMALS),
      planet=rng.choice(L.PLANETS),
      region=rng.choice(L.REGIONS),
    )

  extra = _num_fillers(rng, 8)
  n_topical = 1 + sum(rng.random() < 0.4 for _ in range(extra))
  sentences = [topical(p) for p in _draw(rng, L.TOPIC_SENTENCES[label], n_topical)]
  for pattern in _draw(rng, L.NEWS_FILLERS, extra - n_topical + 1):
    sentences.insert(rng.randint(1, len(sentences)), _fill(rng, pattern))
  return {"text": " ".join(sentences), "label": label}


def _facts(rng: random.Random, label: int) -> dict:
  stated = []
  for person in rng.sample(L.NAMES, rng.randint(2, 6)):
    positive, negative, objects = rng.choice(L.FACT_FRAMES)
    obj = rng.choice(objects)
    stated.append((person, positive.format(x=person, o=obj), negative.format(x=person, o=obj)))
  sentences = [s for _, s, _ in stated]
  for pattern in _draw(rng, L.FACT_FILLERS, _num_fillers(rng, 6)):
    sentences.insert(rng.randint(0, len(sentences)), _fill(rng, pattern))
  person, positive, negative = rng.choice(stated)
  return {
    "premise": " ".join(sentences),
    "hypothesis": negative if label else positive,
    "subject": person,
    "label": label,
  }


def _pair(rng: random.Random, label: int) -> dict:
  past, base, synonyms = rng.choice(L.PAIR_FRAMES)
  subject = rng.choice(L.NAMES)
  fixed = dict(o=rng.choice(L.PAIR_OBJECTS), c=rng.choice(L.CITIES))
  when = _fill(rng, rng.choice(L.TIMES))
  when = when[0].lower() + when[1:]
  first = past if rng.random() < 0.6 else rng.choice(synonyms)
  if label:
    second = rng.choice([s for s in synonyms if s != first])
  else:
    second = rng.choice(L.NEGATIONS).format(base=base)
  sentence1 = f"{subject} {first.format(**fixed)} {when}."
  if rng.random() < 0.5:
    sentence2 = f"{when[0].upper()}{when[1:]}, {subject} {second.format(**fixed)}."
  else:
    sentence2 = f"{subject} {second.format(**fixed)} {when}."
  return {"sentence1": sentence1, "sentence2": sentence2, "subject": subject, "label": label}


def _people(rng: random.Random, label: int) -> dict:
  """A passage about 2-4 people, one fact each, and a question whose answer is one of them."""
  del label  # the answer's position is drawn with the people
  people = rng.sample(L.NAMES, rng.randint(2, 4))
  facts = []
  for person, (positive, _, objects) in zip(people, rng.sample(L.FACT_FRAMES, len(people))):
    facts.append((person, positive.format(x=person, o=rng.choice(objects))))
  sentences = [fact for _, fact in facts]
  for pattern in _draw(rng, L.FACT_FILLERS, _num_fillers(rng, 4)):
    sentences.insert(rng.randint(0, len(sentences)), _fill(rng, pattern))
  person, fact = rng.choice(facts)
  # "Maria lives in Oslo." -> "Who lives in Oslo?"
  question = "Who" + fact[len(person) : -1] + "?"
  return {
    "passage": " ".join(sentences),
    "question": question,
    "evidence": fact,
    "people": people,
    "label": people.index(person),
  }


def _story(rng: random.Random, label: int) -> dict:
  """A situation about one person and 2-4 endings that differ only in who acts: the gold
  ending's person is the one in the context, the others are people it never mentions."""
  del label  # the gold ending's position is drawn with the endings
  situation, ending = rng.choice(L.STORY_SITUATIONS)
  person, *others = rng.sample(L.NAMES, 4)
  people = [person] + others[: rng.randint(1, 3)]
  rng.shuffle(people)
  context = situation.format(x=person)
  if rng.random() < 0.5:
    context = f"{rng.choice(L.STORY_SETTINGS)} {context}"
  return {
    "context": context,
    "endings": [ending.format(x=p) for p in people],
    "label": people.index(person),
  }


_MAKERS = {
  "reviews": (_review, 2),
  "news": (_news, 4),
  "facts": (_facts, 2),
  "pairs": (_pair, 2),
  "people": (_people, 1),
  "story": (_story, 1),
}


@functools.lru_cache(maxsize=None)
def generate(family: str, split: str) -> tuple:
  """The examples of one split (a tuple, so the cached value cannot be changed by callers)."""
  if family not in SIZES or split not in SIZES[family]:
    known = ", ".join(SIZES[family]) if family in SIZES else "none: unknown family"
    raise ValueError(f"demo dataset {family!r} has no split {split!r} (splits: {known}).")
  make, num_labels = _MAKERS[family]
  rng = random.Random(zlib.crc32(f"t0jax-demo/{family}/{split}".encode()))
  seen = set() if split == "train" else {_key(e) for e in generate(family, "train")}
  labels = [i % num_labels for i in range(SIZES[family][split])]
  rng.shuffle(labels)  # balanced classes in random order
  out = []
  for label in labels:
    for _ in range(1000):
      example = make(rng, label)
      if _key(example) not in seen:
        break
    seen.add(_key(example))
    out.append(example)
  return tuple(out)


def _key(example: dict) -> str:
  return json.dumps(example, sort_keys=True)


def reviews(split: str) -> list:
  """Product reviews; label 0 negative, 1 positive. The opening (and usually the closing)
  sentence carries the sentiment; the sentences between are neutral."""
  return list(generate("reviews", split))


def news(split: str) -> list:
  """News snippets; label 0 sports, 1 business, 2 science, 3 weather."""
  return list(generate("news", split))


def facts(split: str) -> list:
  """Facts about people and a hypothesis about one of them (`subject`); label 0 entailment (a
  stated fact), 1 not entailment (a stated fact, negated)."""
  return list(generate("facts", split))


def pairs(split: str) -> list:
  """Sentence pairs about one person (`subject`); label 1 paraphrase (the verb swapped for a synonym, maybe reordered),
  0 not a paraphrase (the second sentence says the event did not happen)."""
  return list(generate("pairs", split))


def people(split: str) -> list:
  """Extractive QA: a passage stating one fact about each of 2-4 `people` and a question
  (`Who lives in Oslo?`) answered by one of them (`label`, an index into `people`); `evidence`
  is the passage's sentence that answers it."""
  return list(generate("people", split))


def story(split: str) -> list:
  """Held-out sentence completion: a situation about a person and 2-4 endings, one of which
  (`label`) continues with that person."""
  return list(generate("story", split))

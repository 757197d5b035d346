"""Evaluation inputs: a SeqIO task's examples read once, checked, and cached as Python lists.

A task is scored by rank classification when its examples carry answer choices: `choices`
(token ids, ragged) or `answer_choices` (strings, tokenised here with the task's `targets`
vocabulary). Every other task is generative. Feature names follow the catalogue's score-eval
tasks (t0jax/data/preprocessors.py); a user's own SeqIO task needs only `inputs` plus choices,
and optionally `answer_idx` (else the gold choice is the one equal to `targets`), `idx`,
`inputs_pretokenized` and `choices_pretokenized`.

T5-style rank-classification tasks hold one row per answer choice instead: `idx` = [example,
choice], `is_correct`, the choice as `targets` (t5's `rank_classification` preprocessor, t-zero's
and P3's `_score_eval` tasks). Their rows are grouped back into one example per `idx[0]` (every
host reads all rows and keeps every n-th example, so no example is split between hosts) and
scored like any choice-carrying example. A task with neither choices nor targets, or without
`inputs`, cannot be scored: EvalDataError names it.

Reading goes through tf.data once per (task, split, lengths, shard, max_examples, vocabulary);
later evaluations (a trainer evaluating every few thousand steps) reuse the cached lists.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional

import numpy as np

from t0jax.data.vocab import EOS_ID

_cache: Dict[tuple, "TaskData"] = {}


class EvalDataError(ValueError):
  """An evaluation task or example that cannot be scored; the message names it."""


@dataclasses.dataclass
class TaskData:
  task: str
  kind: str  # "rank" (answer choices) or "generate"
  keys: List[tuple]  # (idx, host, position): unique, and sorts like the task's own order
  inputs: List[List[int]]
  input_texts: List[str]
  target_texts: List[str]
  examples: List[dict]  # the scalar features, for the task's postprocessor
  choices: List[List[List[int]]] = dataclasses.field(default_factory=list)
  choice_texts: List[List[str]] = dataclasses.field(default_factory=list)
  answer_idx: List[int] = dataclasses.field(default_factory=list)
  from_rows: bool = False  # grouped from T5-style rows (one per choice)

  def __len__(self) -> int:
    return len(self.inputs)


def vocab_size_of(vocabulary) -> int:
  return int(vocabulary.vocab_size)


def task_vocabulary(task):
  """The vocabulary of the task's `targets` (else `inputs`) feature."""
  for key in ("targets", "inputs"):
    if key in task.output_features:
      return task.output_features[key].vocabulary
  raise EvalDataError(
    f"task {task.name}: it has neither an `inputs` nor a `targets` output "
    f"feature (it has {', '.join(task.output_features) or 'none'}), so it "
    "cannot be evaluated."
  )


def check_vocabulary(task, model_vocab_size: int) -> None:
  """The task's vocabulary must be the model's: the same size, or padded up to a multiple of 128
  as T5 checkpoints pad it (32100 ids in a 32128-row embedding). Runs before any scoring."""
  vocabulary = task_vocabulary(task)
  try:
    size = vocab_size_of(vocabulary)
  except Exception as e:  # noqa: BLE001 - a vocabulary file that cannot be read
    raise EvalDataError(f"task {task.name}: cannot load its vocabulary ({e}).") from e
  padded = -(-size // 128) * 128
  if model_vocab_size not in (size, padded):
    where = getattr(vocabulary, "sentencepiece_model_file", type(vocabulary).__name__)
    raise EvalDataError(
      f"task {task.name}: its vocabulary ({where}, {size} ids) does not match the checkpoint, "
      f"whose embedding has {model_vocab_size} rows. Evaluate with the vocabulary the "
      "checkpoint was trained with (T0JAX_VOCAB, --vocab, or gin `t0jax.data.vocab`), or a "
      "checkpoint trained on this task's vocabulary. Nothing was scored."
    )


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _rows(value) -> List[List[int]]:
  """A ragged `choices` value (RaggedTensorValue, object array of arrays, or 2-D array)."""
  if hasattr(value, "to_list"):
    return [list(map(int, r)) for r in value.to_list()]
  return [[int(t) for t in np.asarray(r).reshape(-1)] for r in value]


def _dataset(task, split, lengths, max_examples, host, hosts, use_cached=False, whole=False):
  from t0jax.data.tf_setup import import_tensorflow

  import_tensorflow()
  import seqio

  kw = dict(
    sequence_length=dict(lengths) if lengths else None,
    split=split,
    shuffle=False,
    num_epochs=1,
    use_cached=use_cached,
  )
  if whole:  # every host reads every row (T5-style rows are shared out per example later)
    return task.get_dataset(**kw), None
  source = task.source
  shardable = getattr(source, "supports_arbitrary_sharding", False)
  if hosts > 1 and max_examples is None and shardable:
    return task.get_dataset(shard_info=seqio.ShardInfo(host, hosts), **kw), None
  ds = task.get_dataset(**kw)
  if max_examples is not None:
    ds = ds.take(max_examples)
  # Without arbitrary sharding (or with a global example cap) every host reads the same stream
  # and keeps every `hosts`-th example.
  return (ds.shard(hosts, host) if hosts > 1 else ds), hosts


def load_task(
  task,
  *,
  split: str = "validation",
  task_feature_lengths: Optional[Mapping] = None,
  max_examples: Optional[int] = None,
  host: int = 0,
  hosts: int = 1,
  use_cached: bool = False,
) -> TaskData:
  """This host's examples of `task` (cached). Raises EvalDataError naming the task and the
  example for an input without tokens or a choice-carrying example without choices."""
  vocabulary = task_vocabulary(task)
  key = (
    task.name,
    split,
    tuple(sorted((task_feature_lengths or {}).items())),
    max_examples,
    host,
    hosts,
    str(getattr(vocabulary, "sentencepiece_model_file", id(vocabulary))),
    use_cached,
    repr(task.source),
  )  # a P3 task and the catalogue's share their name
  if key not in _cache:
    _cache[key] = _read(
      task, split, task_feature_lengths, max_examples, host, hosts, vocabulary, use_cached
    )
  return _cache[key]


def clear_cache() -> None:
  _cache.clear()


def task_kind(task_name: str, spec: Mapping) -> str:
  """ "rows" (T5-style, one row per choice), "rank" (choices per example) or "generate", from a
  task's features; EvalDataError for a task that none of them can score."""
  have = ", ".join(sorted(spec)) or "none"
  if "inputs" not in spec:
    raise EvalDataError(
      f"task {task_name}: its examples have no 'inputs' feature (features: "
      f"{have}), so it cannot be evaluated. Give the task an `inputs` feature."
    )
  if "is_correct" in spec:
    idx = spec.get("idx")
    if idx is None or idx.shape.rank != 1 or idx.shape[0] not in (None, 2) or "targets" not in spec:
      raise EvalDataError(
        f"task {task_name}: it has `is_correct` (one row per answer choice, as t5's "
        "rank_classification makes) but not `idx` as [example, choice] and the choice as "
        f"`targets` (features: {have}); it cannot be scored. Give each row both."
      )
    return "rows"
  if "choices" in spec or "answer_choices" in spec:
    return "rank"
  if "targets" not in spec:
    raise EvalDataError(
      f"task {task_name}: its examples have neither answer choices nor "
      f"`targets` (features: {have}); it can be neither ranked nor generated."
    )
  return "generate"


def _read(
  task, split, lengths, max_examples, host, hosts, vocabulary, use_cached=False
) -> TaskData:
  if use_cached:  # a missing or mismatching cache, named, instead of seqio's bare assertion
    from t0jax.data import caches

    try:
      caches.check_cached_tasks([task], split)
    except caches.CacheError as e:
      raise EvalDataError(str(e)) from e
  try:
    ds, stride = _dataset(task, split, lengths, max_examples, host, hosts, use_cached)
    kind = task_kind(task.name, ds.element_spec)
    if kind == "rows":
      ds, _ = _dataset(task, split, lengths, None, host, hosts, use_cached, whole=True)
      return _read_rows(task, ds, max_examples, host, hosts, vocabulary)
  except ValueError as e:
    if isinstance(e, EvalDataError):
      raise
    raise EvalDataError(f"task {task.name}: cannot read split {split!r} ({e}).") from e
  rank = kind == "rank"
  data = TaskData(task.name, kind, [], [], [], [], [])
  for position, ex in enumerate(ds.as_numpy_iterator()):
    global_position = position * stride + host if stride else position
    idx = int(ex["idx"]) if "idx" in ex else global_position
    where = f"task {task.name}, example idx {idx}"
    inputs = [int(t) for t in ex["inputs"]]
    text = (
      _text(ex["inputs_pretokenized"]) if "inputs_pretokenized" in ex else vocabulary.decode(inputs)
    )
    if not inputs:
      raise EvalDataError(
        f"{where}: the input has no tokens (input text {text!r}). Fix the "
        "prompt or drop the example."
      )
    target = (
      _text(ex["targets_pretokenized"])
      if "targets_pretokenized" in ex
      else vocabulary.decode([int(t) for t in ex.get("targets", [])])
    )
    data.keys.append((idx, host, position))
    data.inputs.append(inputs)
    data.input_texts.append(text)
    data.target_texts.append(target)
    data.examples.append(
      {k: (_text(v) if isinstance(v, bytes) else v) for k, v in ex.items() if np.ndim(v) == 0}
    )
    if rank:
      _add_choices(data, ex, vocabulary, where, target)
  return data


def _add_choices(data: TaskData, ex: dict, vocabulary, where: str, target: str) -> None:
  if "choices" in ex:
    choices = _rows(ex["choices"])
    texts = (
      [_text(t) for t in ex["choices_pretokenized"]]
      if "choices_pretokenized" in ex
      else [vocabulary.decode(c) for c in choices]
    )
  else:
    texts = [_text(t) for t in ex["answer_choices"]]
    choices = [list(map(int, vocabulary.encode(t))) for t in texts]
  if not choices:
    raise EvalDataError(
      f"{where}: the example has no answer choices (input "
      f"{data.input_texts[-1][:200]!r}). Give every example at least one "
      "choice, or evaluate the task generatively."
    )
  # A score includes EOS (T0's convention); tasks whose choices were tokenised without it get it.
  choices = [c if c and c[-1] == EOS_ID else c + [EOS_ID] for c in choices]
  if "answer_idx" in ex:
    gold = int(ex["answer_idx"])
  else:
    target_tokens = [int(t) for t in ex.get("targets", [])]
    target_tokens = target_tokens if target_tokens[-1:] == [EOS_ID] else target_tokens + [EOS_ID]
    gold = next((j for j, c in enumerate(choices) if c == target_tokens or texts[j] == target), -1)
  if gold >= len(choices):
    raise EvalDataError(f"{where}: answer_idx {gold} but only {len(choices)} choices.")
  data.choices.append(choices)
  data.choice_texts.append(texts)
  data.answer_idx.append(gold)


def _row_groups(ds, max_examples: Optional[int]):
  """[(example id, [rows in choice order])] in first-seen order, at most `max_examples`."""
  groups: Dict[int, list] = {}
  for row in ds.as_numpy_iterator():
    example, choice = (int(i) for i in np.asarray(row["idx"]).reshape(-1)[:2])
    if example not in groups:
      if max_examples is not None and len(groups) == max_examples:
        break
      groups[example] = []
    groups[example].append((choice, row))
  return [(k, [r for _, r in sorted(rows, key=lambda cr: cr[0])]) for k, rows in groups.items()]


def _read_rows(task, ds, max_examples, host, hosts, vocabulary) -> TaskData:
  """T5-style rows grouped per example: the input once, each row's `targets` a choice, the row
  with `is_correct` the gold one (-1 when none is)."""
  data = TaskData(task.name, "rank", [], [], [], [], [], from_rows=True)
  for position, (example, rows) in enumerate(_row_groups(ds, max_examples)):
    if position % hosts != host:
      continue
    where = f"task {task.name}, example idx {example}"
    inputs = [int(t) for t in rows[0]["inputs"]]
    if any(not np.array_equal(r["inputs"], rows[0]["inputs"]) for r in rows[1:]):
      raise EvalDataError(
        f"{where}: its rows (one per answer choice) have different inputs; "
        "rows sharing idx[0] must be the same example."
      )
    text = (
      _text(rows[0]["inputs_pretokenized"])
      if "inputs_pretokenized" in rows[0]
      else vocabulary.decode(inputs)
    )
    if not inputs:
      raise EvalDataError(f"{where}: the input has no tokens (input text {text!r}).")
    choices = [[int(t) for t in r["targets"]] for r in rows]
    choices = [c if c and c[-1] == EOS_ID else c + [EOS_ID] for c in choices]
    texts = [
      _text(r["targets_pretokenized"]).strip()
      if "targets_pretokenized" in r
      else vocabulary.decode(c)
      for r, c in zip(rows, choices)
    ]
    gold = next((j for j, r in enumerate(rows) if bool(r["is_correct"])), -1)
    data.keys.append((example, host, position))
    data.inputs.append(inputs)
    data.input_texts.append(text)
    data.target_texts.append(texts[gold] if gold >= 0 else "")
    data.examples.append({"idx": example, "answer_idx": gold})
    data.choices.append(choices)
    data.choice_texts.append(texts)
    data.answer_idx.append(gold)
  return data


def check_token_ids(data: TaskData, model_vocab_size: int) -> None:
  """Token ids past the embedding would index garbage rows; name the first offender."""
  for k, inputs in enumerate(data.inputs):
    seqs = [("input", inputs)] + [
      (f"choice {j}", c) for j, c in enumerate(data.choices[k] if data.choices else [])
    ]
    for name, seq in seqs:
      ids = np.asarray(seq)
      bad = ids[(ids <= 0) | (ids >= model_vocab_size)]
      if bad.size:
        raise EvalDataError(
          f"task {data.task}, example idx {data.keys[k][0]}, {name}: token id {bad[0]} is "
          f"outside 1..{model_vocab_size - 1} (the checkpoint's vocabulary); was it tokenised "
          "with another vocabulary?"
        )

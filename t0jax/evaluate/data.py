"""Evaluation inputs: a SeqIO task's examples read once, checked, and cached as Python lists.

A task is scored by rank classification when its examples carry answer choices: `choices`
(token ids, ragged) or `answer_choices` (strings, tokenised here with the task's `targets`
vocabulary). Every other task is generative. Feature names follow the catalogue's score-eval
tasks (t0jax/data/preprocessors.py); a user's own SeqIO task needs only `inputs` plus choices,
and optionally `answer_idx` (else the gold choice is the one equal to `targets`), `idx`,
`inputs_pretokenized` and `choices_pretokenized`.

Reading goes through tf.data once per (task, split, lengths, shard, max_examples, vocabulary);
later evaluations (a trainer evaluating every few thousand steps) reuse the cached lists.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional

import numpy as np

EOS_ID = 1
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

  def __len__(self) -> int:
    return len(self.inputs)


def vocab_size_of(vocabulary) -> int:
  return int(vocabulary.vocab_size)


def check_vocabulary(task, model_vocab_size: int) -> None:
  """The task's vocabulary must be the model's: the same size, or padded up to a multiple of 128
  as T5 checkpoints pad it (32100 ids in a 32128-row embedding). Runs before any scoring."""
  vocabulary = task.output_features["targets"].vocabulary
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
        "checkpoint trained on this task's vocabulary. Nothing was scored.")


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _rows(value) -> List[List[int]]:
  """A ragged `choices` value (RaggedTensorValue, object array of arrays, or 2-D array)."""
  if hasattr(value, "to_list"):
    return [list(map(int, r)) for r in value.to_list()]
  return [[int(t) for t in np.asarray(r).reshape(-1)] for r in value]


def _dataset(task, split, lengths, max_examples, host, hosts):
  from t0jax.data.tf_setup import import_tensorflow
  import_tensorflow()
  import seqio
  kw = dict(sequence_length=dict(lengths) if lengths else None, split=split, shuffle=False,
            num_epochs=1, use_cached=False)
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


def load_task(task, *, split: str = "validation", task_feature_lengths: Optional[Mapping] = None,
              max_examples: Optional[int] = None, host: int = 0, hosts: int = 1) -> TaskData:
  """This host's examples of `task` (cached). Raises EvalDataError naming the task and the
  example for an input without tokens or a choice-carrying example without choices."""
  vocabulary = task.output_features["targets"].vocabulary
  key = (task.name, split, tuple(sorted((task_feature_lengths or {}).items())), max_examples,
         host, hosts, str(getattr(vocabulary, "sentencepiece_model_file", id(vocabulary))))
  if key not in _cache:
    _cache[key] = _read(task, split, task_feature_lengths, max_examples, host, hosts, vocabulary)
  return _cache[key]


def clear_cache() -> None:
  _cache.clear()


def _read(task, split, lengths, max_examples, host, hosts, vocabulary) -> TaskData:
  try:
    ds, stride = _dataset(task, split, lengths, max_examples, host, hosts)
  except ValueError as e:
    raise EvalDataError(f"task {task.name}: cannot read split {split!r} ({e}).") from e
  rank = "choices" in ds.element_spec or "answer_choices" in ds.element_spec
  data = TaskData(task.name, "rank" if rank else "generate", [], [], [], [], [])
  for position, ex in enumerate(ds.as_numpy_iterator()):
    global_position = position * stride + host if stride else position
    idx = int(ex["idx"]) if "idx" in ex else global_position
    where = f"task {task.name}, example idx {idx}"
    inputs = [int(t) for t in ex["inputs"]]
    text = _text(ex["inputs_pretokenized"]) if "inputs_pretokenized" in ex else \
        vocabulary.decode(inputs)
    if not inputs:
      raise EvalDataError(f"{where}: the input has no tokens (input text {text!r}). Fix the "
                          "prompt or drop the example.")
    target = _text(ex["targets_pretokenized"]) if "targets_pretokenized" in ex else \
        vocabulary.decode([int(t) for t in ex.get("targets", [])])
    data.keys.append((idx, host, position))
    data.inputs.append(inputs)
    data.input_texts.append(text)
    data.target_texts.append(target)
    data.examples.append({k: (_text(v) if isinstance(v, bytes) else v)
                          for k, v in ex.items() if np.ndim(v) == 0})
    if rank:
      _add_choices(data, ex, vocabulary, where, target)
  return data


def _add_choices(data: TaskData, ex: dict, vocabulary, where: str, target: str) -> None:
  if "choices" in ex:
    choices = _rows(ex["choices"])
    texts = ([_text(t) for t in ex["choices_pretokenized"]] if "choices_pretokenized" in ex
             else [vocabulary.decode(c) for c in choices])
  else:
    texts = [_text(t) for t in ex["answer_choices"]]
    choices = [list(map(int, vocabulary.encode(t))) for t in texts]
  if not choices:
    raise EvalDataError(f"{where}: the example has no answer choices (input "
                        f"{data.input_texts[-1][:200]!r}). Give every example at least one "
                        "choice, or evaluate the task generatively.")
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


def check_token_ids(data: TaskData, model_vocab_size: int) -> None:
  """Token ids past the embedding would index garbage rows; name the first offender."""
  for k, inputs in enumerate(data.inputs):
    seqs = [("input", inputs)] + [(f"choice {j}", c) for j, c in
                                  enumerate(data.choices[k] if data.choices else [])]
    for name, seq in seqs:
      ids = np.asarray(seq)
      bad = ids[(ids <= 0) | (ids >= model_vocab_size)]
      if bad.size:
        raise EvalDataError(
            f"task {data.task}, example idx {data.keys[k][0]}, {name}: token id {bad[0]} is "
            f"outside 1..{model_vocab_size - 1} (the checkpoint's vocabulary); was it tokenised "
            "with another vocabulary?")

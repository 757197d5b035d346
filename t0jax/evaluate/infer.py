"""T5X's infer over a SeqIO task or mixture: one JSON line per example, in T5X's files
`{task}-{mode}.jsonl-00000-of-00001` (the gathered result of every host's shard).

Each line is what T5X's `write_inferences_to_file` writes:
  {"inputs": {<the example's *_pretokenized features>}, "prediction": TEXT}       (predict)
  {"inputs": {...}, "score": LOG_LIKELIHOOD}                                     (score)
`score` is the summed log-probability of the example's targets (EOS included) given its inputs,
as T5X's `score_batch`. In predict mode a task whose examples carry answer choices is predicted
by rank classification (T0's way; the choice with the highest score) and the line also gets
`"aux": {"choice_scores": [...]}`; other tasks are decoded (greedy, or beam search).

Every host reads its slice of each task (t0jax/evaluate/data.py) and runs the same collective
steps; process 0 gathers the records, restores the task's order and writes each file atomically.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Mapping, Optional

import numpy as np

from t0jax.data.vocab import EOS_ID
from t0jax.evaluate import data as eval_data
from t0jax.evaluate.generate import Generator
from t0jax.evaluate.scorer import ChoiceScorer
from t0jax.parallel import hosts

MODES = ("predict", "score")


def output_name(task_name: str, mode: str) -> str:
  """T5X's file name for one task's inferences from one job (shard 0 of 1 after gathering)."""
  return f"{task_name}-{mode}.jsonl-00000-of-00001"


def _inputs_view(data: eval_data.TaskData, k: int) -> dict:
  """The `*_pretokenized` features T5X copies into `inputs` (the decoded input without them)."""
  ex = data.examples[k]
  view = {name: v for name, v in ex.items() if name.endswith("_pretokenized")}
  return view or {"inputs_pretokenized": data.input_texts[k]}


def _target_tokens(data: eval_data.TaskData, k: int, vocabulary, length: Optional[int]):
  if data.kind == "rank" and data.answer_idx[k] >= 0:
    tokens = list(data.choices[k][data.answer_idx[k]])
  else:
    tokens = [int(t) for t in vocabulary.encode(data.target_texts[k])] + [EOS_ID]
  if length and len(tokens) > length:  # as seqio's append_eos_after_trim: EOS stays last
    tokens = tokens[: length - 1] + [EOS_ID]
  return tokens


def _score_lines(scorer, data, vocabulary, lengths) -> List[dict]:
  targets = [
    [_target_tokens(data, k, vocabulary, lengths.get("targets"))] for k in range(len(data))
  ]
  scores, _ = scorer.score(data.inputs, targets)
  return [{"inputs": _inputs_view(data, k), "score": float(scores[k][0])} for k in range(len(data))]


def _predict_lines(scorer, generator, data, vocabulary, lengths, max_decode_length) -> List[dict]:
  if data.kind == "rank":
    scores, _ = scorer.score(data.inputs, data.choices)
    return [
      {
        "inputs": _inputs_view(data, k),
        "prediction": data.choice_texts[k][int(np.argmax(scores[k]))],
        "aux": {"choice_scores": [float(s) for s in scores[k]]},
      }
      for k in range(len(data))
    ]
  outputs = generator.generate(data.inputs, int(lengths.get("targets", max_decode_length)))
  return [
    {"inputs": _inputs_view(data, k), "prediction": vocabulary.decode(outputs[k])}
    for k in range(len(data))
  ]


def _write_atomic(path: str, lines: List[dict]) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    for line in lines:
      f.write(json.dumps(line, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


def _gathered(keys, lines) -> List[dict]:
  """Every host's lines in the task's order; hosts of one data slice sent the same ones."""
  merged = {}
  for host_keys, host_lines in hosts.allgather_json([[list(k) for k in keys], lines]):
    for key, line in zip(host_keys, host_lines):
      merged.setdefault(tuple(key), line)
  return [merged[k] for k in sorted(merged)]


def infer(
  model,
  params,
  cfg,
  tasks,
  output_dir: str,
  *,
  mode: str = "predict",
  split: str = "validation",
  batch_size: int = 32,
  task_feature_lengths: Optional[Mapping[str, int]] = None,
  max_examples: Optional[int] = None,
  use_cached: bool = False,
  partitioner=None,
  max_decode_length: int = 64,
  num_beams: int = 1,
  length_penalty: float = 0.6,
  buckets_per_octave: int = 4,
) -> Dict[str, str]:
  """Run `mode` over each SeqIO task in `tasks`; returns {task name: file written} (process 0
  writes; the other processes return the same names)."""
  if mode not in MODES:
    raise ValueError(f"--mode {mode!r}: choose one of {', '.join(MODES)}.")
  lengths = dict(task_feature_lengths or {})
  data_slice, num_slices = hosts.data_slice(partitioner)
  scorer = ChoiceScorer(
    model, params, batch_size=batch_size, partitioner=partitioner, per_octave=buckets_per_octave
  )
  generator = Generator(
    model,
    params,
    batch_size=batch_size,
    partitioner=partitioner,
    num_beams=num_beams,
    length_penalty=length_penalty,
    per_octave=buckets_per_octave,
  )
  written = {}
  for task in tasks:
    eval_data.check_vocabulary(task, cfg.vocab_size)
  for task in tasks:
    data, error = None, None
    try:  # a bad example on one host must stop every host
      data = eval_data.load_task(
        task,
        split=split,
        max_examples=max_examples,
        task_feature_lengths=task_feature_lengths,
        host=data_slice,
        hosts=num_slices,
        use_cached=use_cached,
      )
      eval_data.check_token_ids(data, cfg.vocab_size)
    except eval_data.EvalDataError as e:
      error = e
    hosts.raise_if_any_failed(error, f"reading task {task.name}")
    vocabulary = task.output_features["targets"].vocabulary
    if mode == "score":
      lines = _score_lines(scorer, data, vocabulary, lengths)
    else:
      lines = _predict_lines(scorer, generator, data, vocabulary, lengths, max_decode_length)
    ordered = _gathered(data.keys, lines)
    path = os.path.join(output_dir, output_name(task.name, mode))
    if _is_primary():
      os.makedirs(output_dir, exist_ok=True)
      _write_atomic(path, ordered)
    written[task.name] = path
  return written


def _is_primary() -> bool:
  import jax

  return jax.process_index() == 0

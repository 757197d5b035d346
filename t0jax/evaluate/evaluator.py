"""`evaluate`: zero-shot evaluation of a model on a SeqIO mixture or task, T0-style.

Works the way `seqio.Evaluator` does (task inputs read once and cached, predictions re-sorted
by example index, the tasks' own metric functions applied), with rank classification that
encodes each input once: seqio's evaluator would feed one (input, choice) pair per row.

Order of work: resolve tasks -> check every task's vocabulary against the model (before any
scoring) -> read this host's shard of each task -> score all choice-carrying examples of all
tasks together (shared batches waste less padding) -> generate for the others -> gather every
host's per-example results -> per-prompt figures -> per-dataset statistics.
"""

from __future__ import annotations

import time
from typing import Dict, List, Mapping, Optional

import numpy as np

from t0jax.evaluate import data as eval_data
from t0jax.parallel import hosts
from t0jax.evaluate import metrics
from t0jax.evaluate.generate import Generator
from t0jax.evaluate.scorer import ChoiceScorer

EvalDataError = eval_data.EvalDataError


def resolve_tasks(name: str, all_prompts: bool = False) -> list:
  """The tasks of a mixture (or the task itself), sorted by name. With `all_prompts`, each
  catalogue dataset's non-original-task score-eval prompts on the same eval split are added."""
  from t0jax.data.tf_setup import import_tensorflow

  import_tensorflow()
  import seqio
  import t0jax.catalog as catalog  # registers the catalogue's tasks and mixtures

  found = catalog.get_task_or_mixture(name)
  tasks = {t.name: t for t in (found.tasks if isinstance(found, seqio.Mixture) else [found])}
  if all_prompts:
    infos = [_info(n) for n in tasks]
    wanted = {(i.dataset.key, i.eval_split, i.split_suffix) for i in infos if i is not None}
    for info in catalog.all_task_infos():
      if (
        info.score_eval
        and (info.dataset.key, info.eval_split, info.split_suffix) in wanted
        and info.name not in tasks
      ):
        try:  # through the catalogue, so a P3 dir (when set) supplies these prompts too
          tasks[info.name] = catalog.get_task_or_mixture(info.name)
        except FileNotFoundError:  # a prompt P3 does not hold: extras are optional
          continue
  return [tasks[n] for n in sorted(tasks)]


def _info(task_name: str):
  import t0jax.catalog as catalog  # registers the catalogue's tasks and mixtures

  try:
    return catalog.task_info(task_name)
  except KeyError:
    return None


def prompt_metadata(task_name: str) -> dict:
  """Dataset (catalogue dataset, + subset, + eval-split suffix: `anli_r1`), prompt name and
  original-task flag. A task outside the catalogue is its own dataset and counts as original."""
  info = _info(task_name)
  if info is None:
    return {
      "dataset": task_name,
      "prompt": task_name,
      "original_task": True,
      "held_out": False,
      "prompt_collection": "other",
    }
  return {
    "dataset": info.dataset.label + info.split_suffix,
    "prompt": info.prompt.name,
    "original_task": bool(info.prompt.original_task),
    "held_out": _held_out(info.dataset),
    "prompt_collection": _collection(info),
  }


def _collection(info) -> str:
  """Whose prompts the task's examples carry: P3 holds T0's own (promptsource's) renders."""
  from t0jax.data import settings

  return "promptsource" if settings.p3_dir() else info.dataset.prompt_collection


def _held_out(spec) -> bool:
  """Held out: the catalogue evaluates the dataset (an *_eval family) and trains no mixture on
  it (no *_train family), like T0's held-out tasks and the demo's story family."""
  from t0jax.catalog.spec import EVAL_FAMILIES, TRAIN_FAMILIES

  families = set(spec.mixtures)
  return bool(families & set(EVAL_FAMILIES)) and not families & set(TRAIN_FAMILIES)


def _add_chance_and_held_out(datasets: dict, prompts: dict) -> dict:
  """Each dataset's `chance` (mean of 1/number-of-choices over the examples of the prompts its
  headline figure summarises) and, when held out, `held_out: true`."""
  for name, entry in datasets.items():
    mine = [p for p in prompts.values() if p["dataset"] == name and "chance" in p]
    mine = [p for p in mine if p["original_task"]] or mine
    weights = [p["metrics"].get("num_examples", 0) for p in mine]
    if sum(weights):
      entry["chance"] = sum(p["chance"] * w for p, w in zip(mine, weights)) / sum(weights)
    if any(p.get("held_out") for p in prompts.values() if p["dataset"] == name):
      entry["held_out"] = True
  for entry in datasets.values():  # derived entries (ANLI's average): the mean of their parts
    parts = [datasets[n] for n in entry.get("derived_from", ()) if n in datasets]
    if parts and all("chance" in d for d in parts):
      entry["chance"] = sum(d["chance"] for d in parts) / len(parts)
    if parts and all(d.get("held_out") for d in parts):
      entry["held_out"] = True
  return datasets


def _plain(value):
  """JSON-able form of a postprocessed value (numpy scalars and arrays included)."""
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, bytes):
    return value.decode("utf-8", "replace")
  return value


def _calibration_scores(scorer: ChoiceScorer, tasks, datas, text: str) -> List[Optional[list]]:
  """Per rank task, per example: each choice's log-likelihood given the neutral input `text`.
  Each distinct (neutral input, choice) pair is scored once."""
  neutral, pairs = {}, {}
  for task, d in zip(tasks, datas):
    if d.kind != "rank":
      continue
    vocabulary = task.output_features["inputs"].vocabulary
    # An input that encodes to nothing still needs one token for the encoder to attend to.
    tokens = tuple(int(t) for t in vocabulary.encode(text)) or (eval_data.EOS_ID,)
    neutral[task.name] = tokens
    for choices in d.choices:
      for c in choices:
        pairs.setdefault(tokens, {}).setdefault(tuple(c), None)
  keys = sorted(pairs)
  choice_lists = [sorted(pairs[k]) for k in keys]
  scores, _ = scorer.score([list(k) for k in keys], [[list(c) for c in cs] for cs in choice_lists])
  lookup = {(k, c): s for k, cs, ss in zip(keys, choice_lists, scores) for c, s in zip(cs, ss)}
  out = []
  for task, d in zip(tasks, datas):
    if d.kind != "rank":
      out.append(None)
      continue
    tokens = neutral[task.name]
    out.append([np.array([lookup[(tokens, tuple(c))] for c in choices]) for choices in d.choices])
  return out


def evaluate(
  model,
  params,
  cfg,
  mixture_or_task_name: str,
  *,
  batch_size: int = 32,
  split: str = "validation",
  task_feature_lengths: Optional[Mapping[str, int]] = None,
  max_examples: Optional[int] = None,
  calibrate: bool = False,
  calibration_input: str = "N/A",
  all_prompts: bool = False,
  per_example: bool = False,
  partitioner=None,
  pack_choices: bool = True,
  max_decode_length: int = 64,
  num_beams: int = 1,
  length_penalty: float = 0.6,
  buckets_per_octave: int = 4,
  use_cached: bool = False,
) -> dict:
  """Evaluate `params` on every task of `mixture_or_task_name`; returns the results dict that
  `t0jax eval` writes as results.json (see docs/evaluation.md). Cheap to call repeatedly: task
  inputs and compiled programs are cached. With a partitioner on several hosts, every host calls
  this with its own params shards and gets the same results.

  `buckets_per_octave` sets the padded input lengths: more buckets waste less padding but
  compile more programs (1 = powers of two)."""
  start = time.perf_counter()
  tasks = resolve_tasks(mixture_or_task_name, all_prompts)
  for task in tasks:
    eval_data.check_vocabulary(task, cfg.vocab_size)
  if use_cached:  # every cached task has a cache that fits it, before anything is read
    from t0jax.data import caches

    try:
      caches.check_cached_tasks(tasks, split)
    except caches.CacheError as e:
      raise EvalDataError(str(e)) from e
  data_slice, num_slices = hosts.data_slice(partitioner)
  datas, error = [], None
  try:  # an example only one host reads may be bad: every host must learn of it and stop
    for task in tasks:
      datas.append(
        eval_data.load_task(
          task,
          split=split,
          max_examples=max_examples,
          use_cached=use_cached,
          task_feature_lengths=task_feature_lengths,
          host=data_slice,
          hosts=num_slices,
        )
      )
      eval_data.check_token_ids(datas[-1], cfg.vocab_size)
  except EvalDataError as e:
    error = e
  hosts.raise_if_any_failed(error, "reading the evaluation data")
  read_seconds = time.perf_counter() - start

  scorer = ChoiceScorer(
    model,
    params,
    batch_size=batch_size,
    partitioner=partitioner,
    pack_choices=pack_choices,
    per_octave=buckets_per_octave,
  )
  ranked = [d for d in datas if d.kind == "rank"]
  all_scores, all_counts = scorer.score(
    [x for d in ranked for x in d.inputs], [c for d in ranked for c in d.choices]
  )
  unconditional = (
    _calibration_scores(scorer, tasks, datas, calibration_input)
    if calibrate
    else [None] * len(tasks)
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
  generated = _generate(generator, tasks, datas, task_feature_lengths, max_decode_length)
  score_seconds = time.perf_counter() - start - read_seconds

  local, offset = {}, 0
  for task, d, uncond in zip(tasks, datas, unconditional):
    if d.kind == "rank":
      n = len(d)
      local[task.name] = _rank_records(
        task, d, all_scores[offset : offset + n], all_counts[offset : offset + n], uncond
      )
      offset += n
    else:
      local[task.name] = _generation_records(task, d, generated[task.name])
  skipped = _skip_counts([t.name for t in tasks])
  gathered = hosts.allgather_json({"records": local, "skipped": skipped, "slice": data_slice})
  prompts, examples = {}, {}
  for task, d in zip(tasks, datas):
    records = _merge([g["records"][task.name] for g in gathered])
    first_of_slice = {g["slice"]: g for g in reversed(gathered)}.values()
    prompts[task.name] = _prompt_result(
      task,
      d,
      records,
      calibrate,
      _sum_counts(g["skipped"].get(task.name, {}) for g in first_of_slice),
    )
    if per_example:
      examples[task.name] = [_example_view(r) for r in records]
  total = sum(p["metrics"].get("num_examples", 0) for p in prompts.values())
  seconds = time.perf_counter() - start
  results = {
    "mixture_or_task": mixture_or_task_name,
    "split": split,
    "settings": {
      "batch_size": batch_size,
      "max_examples": max_examples,
      "task_feature_lengths": dict(task_feature_lengths or {}),
      "calibrate": calibrate,
      "calibration_input": calibration_input,
      "all_prompts": all_prompts,
      "pack_choices": pack_choices,
      "num_beams": num_beams,
      "max_decode_length": max_decode_length,
      "buckets_per_octave": buckets_per_octave,
      "num_data_slices": num_slices,
    },
    "prompts": prompts,
    "datasets": _add_chance_and_held_out(metrics.aggregate(prompts), prompts),
    "timing": {
      "seconds": seconds,
      "read_seconds": read_seconds,
      "score_seconds": score_seconds,
      "num_examples": total,
      "examples_per_second": total / score_seconds if score_seconds > 0 else None,
    },
  }
  if per_example:
    results["examples"] = examples
  return results


def _merge(per_host: List[List[dict]]) -> List[dict]:
  """Every host's records in example order. Hosts of one data slice sent the same records (same
  keys): one copy is kept. Distinct examples never share a key, whatever their `idx`."""
  merged = {}
  for records in per_host:
    for r in records:
      merged.setdefault(tuple(r["key"]), r)
  return [merged[k] for k in sorted(merged)]


def _generate(generator: Generator, tasks, datas, lengths, max_decode_length) -> Dict[str, list]:
  """Outputs per generative task; tasks sharing a decode length are decoded together."""
  by_length: Dict[int, list] = {}
  for task, d in zip(tasks, datas):
    if d.kind == "generate":
      length = int((lengths or {}).get("targets", max_decode_length))
      by_length.setdefault(length, []).append((task, d))
  out = {}
  for length, members in sorted(by_length.items()):
    outputs = generator.generate([x for _, d in members for x in d.inputs], length)
    offset = 0
    for task, d in members:
      out[task.name] = outputs[offset : offset + len(d)]
      offset += len(d)
  return out


def _rank_records(task, d, scores, counts, unconditional) -> List[dict]:
  records = []
  # Grouped T5-style rows: the task's postprocessor is written for single rows, not examples.
  custom = task.postprocessor is not None and not d.from_rows
  for k in range(len(d)):
    best = int(np.argmax(scores[k]))
    ex = d.examples[k]
    record = {
      "key": list(d.keys[k]),
      "scores": [float(s) for s in scores[k]],
      "tokens": [int(n) for n in counts[k]],
      "chars": [len(t) for t in d.choice_texts[k]],
      "answer_idx": d.answer_idx[k],
      "prediction": best,
      "prediction_text": d.choice_texts[k][best],
      "target": d.target_texts[k],
      "post_prediction": _plain(
        task.postprocess_fn(best, example=ex, is_target=False) if custom else best
      ),
      "post_target": _plain(
        task.postprocess_fn(d.target_texts[k], example=ex, is_target=True)
        if custom
        else d.answer_idx[k]
      ),
    }
    if unconditional is not None:
      record["unconditional"] = [float(s) for s in unconditional[k]]
    records.append(record)
  return records


def _generation_records(task, d, outputs) -> List[dict]:
  vocabulary = task.output_features["targets"].vocabulary
  records = []
  for k, tokens in enumerate(outputs):
    text = vocabulary.decode(tokens)
    ex = d.examples[k]
    records.append(
      {
        "key": list(d.keys[k]),
        "prediction_text": text,
        "target": d.target_texts[k],
        "post_prediction": _plain(task.postprocess_fn(text, example=ex, is_target=False)),
        "post_target": _plain(task.postprocess_fn(d.target_texts[k], example=ex, is_target=True)),
      }
    )
  return records


def _task_metrics(task, kind: str, records: List[dict]) -> dict:
  """The task's own registered metric functions, as seqio's evaluator calls them."""
  out = {}
  targets = [r["post_target"] for r in records]
  predictions = [r["post_prediction"] for r in records]
  calls = [(fn, targets, predictions) for fn in task.predict_metric_fns]
  if kind == "rank":
    gold = [r for r in records if r["answer_idx"] >= 0]
    calls += [
      (fn, [r["post_target"] for r in gold], [r["scores"][r["answer_idx"]] for r in gold])
      for fn in task.score_metric_fns
    ]
  for fn, a, b in calls:
    name = getattr(fn, "__name__", repr(fn))
    try:
      result = fn(a, b)
    except Exception as e:  # noqa: BLE001 - reported with the task and function named
      raise EvalDataError(
        f"task {task.name}: its metric function {name} failed: {type(e).__name__}: {e}"
      ) from e
    out.update({k: _plain(v) for k, v in dict(result).items()})
  return out


def _prompt_result(task, d, records: List[dict], calibrate: bool, skipped: dict) -> dict:
  kind = d.kind
  meta = prompt_metadata(task.name)
  if kind == "rank":
    scores = [np.asarray(r["scores"], np.float64) for r in records]
    figures = metrics.rank_metrics(
      scores,
      [np.asarray(r["tokens"]) for r in records],
      [np.asarray(r["chars"]) for r in records],
      [r["answer_idx"] for r in records],
      [np.asarray(r["unconditional"]) for r in records] if calibrate else None,
    )
  else:
    figures = {
      "num_examples": len(records),
      **metrics.generation_metrics(
        [r["target"] for r in records], [r["prediction_text"] for r in records]
      ),
    }
  # A T5-style rank task's own metric (t5's rank_classification) reads one row per choice; the
  # grouped examples are scored by the accuracy above instead.
  task_figures = _task_metrics(task, kind, records) if records and not d.from_rows else {}
  if kind == "generate":  # the task's own metrics are its headline figures
    figures.update({k: v for k, v in task_figures.items() if isinstance(v, (int, float))})
  scored = [r for r in records if kind == "rank" and r["answer_idx"] >= 0]
  if scored:  # a uniform random guess's accuracy (%), over the examples accuracy counts
    meta["chance"] = 100.0 * float(np.mean([1.0 / len(r["scores"]) for r in scored]))
  return {
    **meta,
    "task": task.name,
    "kind": kind,
    "metrics": figures,
    "task_metrics": task_figures,
    "skipped_by_prompt": skipped,
  }


def _example_view(record: dict) -> dict:
  keep = ("scores", "prediction", "prediction_text", "answer_idx", "target", "unconditional")
  return {"idx": record["key"][0], **{k: record[k] for k in keep if k in record}}


def _skip_counts(names) -> dict:
  from t0jax.data import skip_counts

  counts = skip_counts()
  return {n: counts[n] for n in names if n in counts}


def _sum_counts(dicts) -> dict:
  total: Dict[str, int] = {}
  for d in dicts:
    for k, v in d.items():
      total[k] = total.get(k, 0) + int(v)
  return total

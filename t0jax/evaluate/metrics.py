"""Evaluation figures: per-prompt accuracies, per-dataset statistics, generative metrics.

Definitions (docs/evaluation.md):
- accuracy: the choice with the highest summed log-likelihood (tokens + EOS) is the prediction
  (T0's metric). Ties go to the first choice. Examples whose target is not among the choices
  (`answer_idx` -1) are excluded from every accuracy and counted in `num_target_not_in_choices`.
- accuracy_per_token: log-likelihood divided by the choice's token count, EOS included.
- accuracy_per_char: log-likelihood divided by the choice text's length in characters
  (lm-eval-harness `acc_norm`; an empty choice text counts as one character).
- accuracy_calibrated: log-likelihood minus the choice's log-likelihood given a neutral input.
All accuracies are percentages, like the T0 paper's.
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Dict, List, Optional, Sequence

import numpy as np

from t0jax.data.accuracy import num_not_in_choices, rank_accuracy

# Mean accuracy over prompts of the released T0 (11B), REFERENCE.md section 2. ANLI's figure is
# the average over its three rounds, so it stands beside each round and beside their average.
T0_REFERENCE = {
  "super_glue/rte": 81.0,
  "super_glue/cb": 70.1,
  "anli_r1": 41.0,
  "anli_r2": 41.0,
  "anli_r3": 41.0,
  "anli (r1-r3 average)": 41.0,
  "super_glue/wsc.fixed": 61.1,
  "winogrande/winogrande_xl": 59.9,
  "super_glue/copa": 91.5,
  "hellaswag": 33.6,
  "story_cloze/2016": 92.4,
  "super_glue/wic": 56.1,
}
ANLI_ROUNDS = ("anli_r1", "anli_r2", "anli_r3")
ANLI_AVERAGE = "anli (r1-r3 average)"

RANK_METRICS = ("accuracy", "accuracy_per_token", "accuracy_per_char", "accuracy_calibrated")


def _accuracy(scores: Sequence[np.ndarray], gold: np.ndarray) -> float:
  """Accuracy of the argmax choice (ties: the first choice)."""
  return rank_accuracy(gold, [int(np.argmax(s)) for s in scores])


def rank_metrics(
  scores,
  token_counts,
  char_counts,
  answer_idx,
  unconditional: Optional[Sequence[np.ndarray]] = None,
) -> dict:
  """Figures of one prompt from per-example choice scores (lists of float arrays)."""
  gold = np.asarray(answer_idx, np.int64)
  out = {
    "num_examples": int(gold.size),
    "num_scored": int(np.sum(gold >= 0)),
    "num_target_not_in_choices": num_not_in_choices(gold),
    "accuracy": _accuracy(scores, gold),
    "accuracy_per_token": _accuracy([s / n for s, n in zip(scores, token_counts)], gold),
    "accuracy_per_char": _accuracy(
      [s / np.maximum(np.asarray(c, np.float64), 1.0) for s, c in zip(scores, char_counts)], gold
    ),
  }
  if unconditional is not None:
    out["accuracy_calibrated"] = _accuracy([s - u for s, u in zip(scores, unconditional)], gold)
  return out


def summary(values: Sequence[float]) -> dict:
  """Median, mean, min and max over prompts (NaN prompts, with no scorable example, left out)."""
  finite = [v for v in values if v is not None and not math.isnan(v)]
  if not finite:
    return {
      "median": float("nan"),
      "mean": float("nan"),
      "min": float("nan"),
      "max": float("nan"),
      "num_prompts": 0,
    }
  return {
    "median": statistics.median(finite),
    "mean": statistics.fmean(finite),
    "min": min(finite),
    "max": max(finite),
    "num_prompts": len(finite),
  }


def aggregate(prompts: Dict[str, dict]) -> Dict[str, dict]:
  """Per dataset: for its original-task prompts and for all its prompts, the summary of every
  metric the prompts report, plus example counts and the T0 reference figure when known."""
  by_dataset: Dict[str, List[dict]] = {}
  for result in prompts.values():
    by_dataset.setdefault(result["dataset"], []).append(result)
  datasets = {}
  for name, results in sorted(by_dataset.items()):
    entry = {
      "kind": results[0]["kind"],
      "original_task": _group([r for r in results if r["original_task"]]),
      "all_prompts": _group(results),
    }
    if name in T0_REFERENCE:
      entry["t0_reference_mean_accuracy"] = T0_REFERENCE[name]
    entry["prompt_collection"] = _collection(results)
    datasets[name] = entry
  rounds = [datasets[r] for r in ANLI_ROUNDS if r in datasets]
  if len(rounds) == len(ANLI_ROUNDS):
    datasets[ANLI_AVERAGE] = _average_of(rounds)
  return datasets


def _collection(results: List[dict]) -> str:
  """Whose prompts a dataset was evaluated with: "promptsource" (T0's own), "t0jax" (the
  catalogue's), "other", or "mixed"."""
  found = {r.get("prompt_collection", "other") for r in results}
  return found.pop() if len(found) == 1 else "mixed"


def _group(results: List[dict]) -> dict:
  metrics = sorted(
    {
      k
      for r in results
      for k, v in r["metrics"].items()
      if isinstance(v, (int, float)) and not k.startswith("num_")
    }
  )
  group = {k: summary([r["metrics"].get(k, float("nan")) for r in results]) for k in metrics}
  group["prompts"] = sorted(r["prompt"] for r in results)
  for count in ("num_examples", "num_target_not_in_choices"):
    group[count] = int(sum(r["metrics"].get(count, 0) for r in results))
  return group


def _average_of(datasets: List[dict]) -> dict:
  """ANLI's reported figure: each statistic averaged over the rounds."""
  out = {
    "kind": "rank",
    "t0_reference_mean_accuracy": T0_REFERENCE[ANLI_AVERAGE],
    "derived_from": list(ANLI_ROUNDS),
    "prompt_collection": _collection(datasets),
  }
  for group in ("original_task", "all_prompts"):
    metrics = set.intersection(
      *[{k for k, v in d[group].items() if isinstance(v, dict)} for d in datasets]
    )
    out[group] = {
      m: {
        **{
          s: statistics.fmean(d[group][m][s] for d in datasets)
          for s in ("median", "mean", "min", "max")
        },
        "num_prompts": sum(d[group][m]["num_prompts"] for d in datasets),
      }
      for m in sorted(metrics)
    }
    for count in ("num_examples", "num_target_not_in_choices"):
      out[group][count] = sum(d[group][count] for d in datasets)
  return out


# --- generative tasks -----------------------------------------------------------------------


def _words(text: str) -> List[str]:
  # rouge_score's default tokenizer: lowercase, non-alphanumerics become spaces, no stemming.
  return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _lcs(a: List[str], b: List[str]) -> int:
  previous = [0] * (len(b) + 1)
  for x in a:
    current = [0]
    for j, y in enumerate(b):
      current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
    previous = current
  return previous[-1]


def rouge_l(target: str, prediction: str) -> float:
  """ROUGE-L F-measure of one pair. The `rouge_score` package is not a dependency (its nltk
  requirement is heavy); this follows its definition without stemming."""
  t, p = _words(target), _words(prediction)
  if not t or not p:
    return float(t == p)
  lcs = _lcs(t, p)
  if lcs == 0:
    return 0.0
  precision, recall = lcs / len(p), lcs / len(t)
  return 2 * precision * recall / (precision + recall)


def generation_metrics(targets: Sequence[str], predictions: Sequence[str]) -> dict:
  """Exact match (after stripping surrounding whitespace) and mean ROUGE-L, as percentages; the
  default for generative tasks that register no metric functions of their own."""
  if not targets:
    return {"exact_match": float("nan"), "rougeL": float("nan")}
  exact = [t.strip() == p.strip() for t, p in zip(targets, predictions)]
  return {
    "exact_match": 100.0 * float(np.mean(exact)),
    "rougeL": 100.0 * float(np.mean([rouge_l(t, p) for t, p in zip(targets, predictions)])),
  }

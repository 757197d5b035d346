"""Zero-shot evaluation (T0's protocol): rank classification with one encoder pass per input,
generation for tasks without choices, per-prompt and per-dataset figures, reports.

`evaluate(model, params, cfg, mixture_or_task_name, batch_size=...)` is the entry point for
Python callers (the trainer's periodic evaluation); `t0jax eval` (t0jax/cli/eval.py) wraps it
with checkpoint loading and the report files. See docs/evaluation.md.

Importing the package imports nothing heavy: the scorer and the batching plan need no
TensorFlow (so `t0jax predict` uses them without it); the names below load on first use.
"""

import importlib

_EXPORTS = {
  "EvalDataError": "data",
  "evaluate": "evaluator",
  "prompt_metadata": "evaluator",
  "resolve_tasks": "evaluator",
  "ChoiceScorer": "scorer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f"module 't0jax.evaluate' has no attribute {name!r}")
  return getattr(importlib.import_module(f"t0jax.evaluate.{_EXPORTS[name]}"), name)

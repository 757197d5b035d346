"""Zero-shot evaluation (T0's protocol): rank classification with one encoder pass per input,
generation for tasks without choices, per-prompt and per-dataset figures, reports.

`evaluate(model, params, cfg, mixture_or_task_name, batch_size=...)` is the entry point for
Python callers (the trainer's periodic evaluation); `t0jax eval` (t0jax/evaluate.py) wraps it
with checkpoint loading and the report files. See docs/evaluation.md.
"""
from t0jax.tf_setup import import_tensorflow

import_tensorflow()  # before seqio loads it: quiet, no GPUs for TensorFlow
from t0jax.evaluation.data import EvalDataError
from t0jax.evaluation.evaluator import evaluate, prompt_metadata, resolve_tasks
from t0jax.evaluation.scorer import ChoiceScorer

__all__ = ["ChoiceScorer", "EvalDataError", "evaluate", "prompt_metadata", "resolve_tasks"]

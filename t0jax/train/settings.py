"""The training run's settings, grouped (data, loss, checkpointing, evaluation, logging) and
checked before anything is compiled.

`train()` keeps its flat gin parameters (`train.batch_size`, ... bound from T5X-style macros in
gin/runs/finetune.gin); `RunSettings.from_train_args` groups them. A bad value fails here with
the macro a user writes, never as a silent no-op (T5X's `TRAIN_STEPS=-5` "trains" to step 0).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

from t0jax.model.losses import parse_loss_normalizing_factor

# Fine-tuning runs are thousands of steps (T0: 12,200); more than this from a checkpoint without
# a step is T5X's absolute count meant for a checkpoint that carries one.
MAX_STEPS_WITHOUT_CHECKPOINT_STEP = 1_000_000
EVAL_MODES = ("auto", "rank", "loss")


@dataclasses.dataclass(frozen=True)
class DataSettings:
  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  batch_size: int
  seed: int = 0
  pack: bool = True
  num_virtual_shards: int = 8
  use_cached_tasks: bool = False
  data_process: bool = True
  truncation_check_examples: int = 200


@dataclasses.dataclass(frozen=True)
class LossSettings:
  z_loss: float = 1e-4
  label_smoothing: float = 0.0
  loss_normalizing_factor: object = "num_real_target_tokens"  # parsed: str, float or None


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
  period: int = 1000
  keep: Optional[int] = 3
  async_save: bool = True
  initial_checkpoint_path: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  period: int = 0  # 0: no periodic evaluation
  mixture_or_task_name: Optional[str] = None  # None: the training mixture
  steps: int = 4  # batches of the validation loss
  max_examples: Optional[int] = None  # per prompt, rank classification
  mode: str = "auto"


@dataclasses.dataclass(frozen=True)
class LogSettings:
  period: int = 100
  tensorboard: bool = True
  progress_bar: bool = True


@dataclasses.dataclass(frozen=True)
class RunSettings:
  model_dir: str
  train_steps: Optional[int]
  train_steps_relative: Optional[int]
  num_microbatches: int
  data: DataSettings
  loss: LossSettings
  checkpoint: CheckpointSettings
  eval: EvalSettings
  log: LogSettings

  @classmethod
  def from_train_args(cls, a: Mapping) -> "RunSettings":
    """Group `train()`'s keyword arguments; ValueError naming the macro on a bad value."""
    _check(a)
    eval_steps = a["eval_steps"] if a.get("eval_steps") is not None else a["eval_batches"]
    return cls(
      model_dir=a["model_dir"],
      train_steps=a["train_steps"],
      train_steps_relative=a["train_steps_relative"],
      num_microbatches=a["num_microbatches"],
      data=DataSettings(
        a["mixture_or_task_name"],
        dict(a["task_feature_lengths"]),
        a["batch_size"],
        a["seed"],
        a["pack"],
        a["num_virtual_shards"],
        a["use_cached_tasks"],
        a["data_process"],
        a["truncation_check_examples"],
      ),
      loss=LossSettings(
        a["z_loss"],
        a["label_smoothing"],
        parse_loss_normalizing_factor(a["loss_normalizing_factor"]),
      ),
      checkpoint=CheckpointSettings(
        a["checkpoint_period"],
        a["keep_checkpoints"],
        a["async_checkpointing"],
        a["initial_checkpoint_path"],
      ),
      eval=EvalSettings(
        a["eval_period"],
        a["eval_mixture_or_task_name"],
        eval_steps,
        a["eval_max_examples"],
        a["eval_mode"],
      ),
      log=LogSettings(a["log_period"], a["tensorboard"], a["progress_bar"]),
    )


# (train() parameter, macro users write, smallest allowed value)
_COUNTS = (
  ("train_steps", "TRAIN_STEPS", 1),
  ("train_steps_relative", "TRAIN_STEPS_RELATIVE", 1),
  ("batch_size", "BATCH_SIZE", 1),
  ("num_microbatches", "NUM_MICROBATCHES", 1),
  ("checkpoint_period", "CHECKPOINT_PERIOD", 1),
  ("log_period", "LOG_PERIOD", 1),
  ("eval_period", "EVAL_PERIOD", 0),
  ("eval_steps", "EVAL_STEPS", 1),
  ("eval_batches", "train.eval_batches", 1),
  ("num_virtual_shards", "NUM_VIRTUAL_SHARDS", 1),
)


def _check(a: Mapping) -> None:
  for name, macro, least in _COUNTS:
    value = a.get(name)
    if value is None and name in ("train_steps", "train_steps_relative", "eval_steps"):
      continue
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
      what = "a positive integer" if least else "0 (off) or a positive integer"
      raise ValueError(f"{macro} (train.{name}) = {value!r}: must be {what}.")
  if a.get("train_steps") is None and a.get("train_steps_relative") is None:
    raise ValueError(
      "Set TRAIN_STEPS (train.train_steps, the step to stop at) or "
      "TRAIN_STEPS_RELATIVE (train.train_steps_relative, steps to train)."
    )
  if not 0.0 <= a["label_smoothing"] < 1.0:
    raise ValueError(
      f"LABEL_SMOOTHING (train.label_smoothing) = {a['label_smoothing']!r}: must be in [0, 1)."
    )
  if a["z_loss"] < 0:
    raise ValueError(f"Z_LOSS (train.z_loss) = {a['z_loss']!r}: must be 0 or more.")
  if a["eval_mode"] not in EVAL_MODES:
    raise ValueError(f"train.eval_mode = {a['eval_mode']!r}: use one of {', '.join(EVAL_MODES)}.")


def target_step(
  train_steps: Optional[int], train_steps_relative: Optional[int], initial_step: Optional[int]
) -> int:
  """The step training stops at, T5X's way.

  `initial_step` is the step the initial checkpoint carries (T5X and t0jax checkpoints), None
  for one without (Hugging Face) or a run from scratch. TRAIN_STEPS is then absolute (T0:
  1112200 from step 1100000 = 12,200 fine-tuning steps); TRAIN_STEPS_RELATIVE, when set, counts
  from the initial checkpoint's step (T5X counts from the step it resumes, so a preempted run
  trains longer; here a resumed run stops where the uninterrupted one would).
  """
  base = initial_step or 0
  if train_steps_relative is not None:
    return base + train_steps_relative
  if initial_step is None and train_steps > MAX_STEPS_WITHOUT_CHECKPOINT_STEP:
    raise ValueError(
      f"TRAIN_STEPS={train_steps} from a checkpoint without a step (or from scratch) would "
      f"fine-tune {train_steps:,} steps. T5X counts TRAIN_STEPS from the pre-training "
      "checkpoint's step (T0: 1112200 = 1,100,000 + 12,200), but this initial checkpoint "
      "carries none. Set TRAIN_STEPS to the number of fine-tuning steps (T0: 12200), or "
      "TRAIN_STEPS_RELATIVE. Nothing was trained."
    )
  if initial_step is not None and train_steps <= initial_step:
    raise ValueError(
      f"TRAIN_STEPS={train_steps} is not past the initial checkpoint's step {initial_step}: "
      "with a checkpoint that carries a step, TRAIN_STEPS is absolute as in T5X (T0: 1112200 "
      f"from step 1100000). Use TRAIN_STEPS={initial_step} + N, or TRAIN_STEPS_RELATIVE=N. "
      "Nothing was trained."
    )
  return train_steps

"""SeqIO registration of catalogue datasets: one task per (dataset, prompt[, eval split]) and a
`_score_eval` twin for every prompt with answer choices.

Naming is t-zero's formula (so P3's folder names are task names): `<dataset>_<subset>_<prompt
name>` with every run of characters other than word characters, `.` and `_` turned into one `_`.
A dataset with several eval splits (ANLI's dev_r1..dev_r3) gets one task per eval split, suffixed
with the split name minus a leading `dev_`/`validation_`/`test_` (`anli_<prompt>_r1`), whose
`train`/`validation`/`test` are that round's splits. Twins append `_score_eval`.

Every task exposes the dataset's own split names plus two aliases: `train` (the catalogue's
`train_split`) and `validation` (its eval split, when there is exactly one for the task), so
mixtures can ask all their tasks for the same split.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Optional

from t0jax.data.tf_setup import import_tensorflow

import_tensorflow()  # before seqio loads it: quiet, no GPUs for TensorFlow
import seqio

from t0jax.data import preprocessors
from t0jax.data.source import PromptedDataSource, PromptRef

from .spec import Catalog, CatalogError, DatasetSpec, PromptInfo

_SPLIT_PREFIXES = ("dev_", "validation_", "val_", "test_", "eval_")


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """What t0jax knows about a registered task beyond seqio's view of it."""

  name: str
  dataset: DatasetSpec
  prompt: PromptInfo
  score_eval: bool
  eval_split: Optional[str]  # the dataset split behind the task's `validation` split
  base_name: str  # the training-format task this one belongs to (itself if not a twin)
  split_suffix: str = ""  # "_r1" for ANLI's dev_r1 task; "" for the dataset's main task

  @property
  def trains(self) -> bool:
    """A task training mixtures draw from (not a twin, not a per-eval-split task)."""
    return not self.score_eval and not self.split_suffix


_INFO: dict = {}
# Called before every lookup (tasks/__init__.py's `refresh`).
BEFORE_LOOKUP: list = []


def sanitize(name: str) -> str:
  return re.sub(r"[^\w\d\._]+", "_", name)


def task_name(dataset: str, subset: Optional[str], prompt_name: str) -> str:
  return sanitize(dataset + (f"_{subset}_" if subset is not None else "_") + prompt_name)


def split_suffix(split: str) -> str:
  for prefix in _SPLIT_PREFIXES:
    if split.startswith(prefix) and len(split) > len(prefix):
      return split[len(prefix) :]
  return split


def score_eval_name(name: str) -> str:
  return name + "_score_eval"


def _split_maps(spec: DatasetSpec) -> list:
  """(name suffix, eval split, split map) for each task a prompt of `spec` yields."""
  identity = {s: s for s in spec.splits}
  if spec.train_split:
    identity["train"] = spec.train_split
  if len(spec.eval_splits) <= 1:
    ev = spec.eval_splits[0] if spec.eval_splits else None
    return [("", ev, {**identity, **({"validation": ev} if ev else {})})]
  out = [("", None, identity)] if spec.train_split else []
  for ev in spec.eval_splits:
    suffix = split_suffix(ev)
    # A round's own train/test splits (ANLI: train_r1, test_r1), as t-zero mapped them.
    rounds = {s.split("_", 1)[0]: s for s in spec.splits if s.endswith("_" + suffix)}
    mapped = {name: rounds[name] for name in ("train", "test") if name in rounds}
    out.append(("_" + suffix, ev, {**mapped, "validation": ev, ev: ev}))
  return out


def plan_tasks(spec: DatasetSpec) -> list:
  """(TaskInfo, split map) of every task `spec` registers, without registering anything."""
  planned = []
  for prompt in spec.prompts:
    base = task_name(spec.dataset, spec.subset, prompt.name)
    for suffix, ev, split_map in _split_maps(spec):
      name = base + suffix
      planned.append((TaskInfo(name, spec, prompt, False, ev, name, suffix), split_map))
      if prompt.has_choices:
        planned.append(
          (TaskInfo(score_eval_name(name), spec, prompt, True, ev, name, suffix), split_map)
        )
  return planned


TRAIN_SHUFFLE_BUFFER = 128


def _add(info: TaskInfo, split_map: dict, vocabulary) -> None:
  spec = info.dataset
  source = PromptedDataSource(
    task_name=info.name,
    spec=spec.source,
    prompt=PromptRef(spec.templates_path, info.prompt.id, info.prompt.name),
    split_map=split_map,
    num_examples=spec.splits,
    score_eval=info.score_eval,
    field_aliases=spec.field_aliases,
  )
  if info.score_eval:
    extra = dict(
      preprocessors=preprocessors.score_eval_preprocessors(),
      postprocess_fn=preprocessors.answer_index_postprocessor,
      metric_fns=[preprocessors.rank_classification_accuracy],
    )
  else:
    # The source already visits examples in a seeded random permutation, so seqio's buffer
    # only mixes locally; its default (1,000 per task) would render and tokenise
    # 1,000 x tasks x shards examples before a mixture's first batch.
    extra = dict(
      preprocessors=preprocessors.train_preprocessors(), shuffle_buffer_size=TRAIN_SHUFFLE_BUFFER
    )
  seqio.TaskRegistry.add(
    info.name, source=source, output_features=preprocessors.output_features(vocabulary), **extra
  )
  _INFO[info.name] = info


def register_catalog(catalog: Catalog, vocabulary) -> list:
  """Register every task of `catalog` with seqio; returns their TaskInfos (in catalogue order).

  Raises CatalogError when two prompts would get the same task name.
  """
  planned, owner = [], {}
  for spec in catalog.datasets:
    for info, split_map in plan_tasks(spec):
      clash = owner.get(info.name) or (_INFO[info.name] if info.name in _INFO else None)
      if clash is not None or info.name in seqio.TaskRegistry.names():
        other = (
          f"prompt {clash.prompt.name!r} of {clash.dataset.label} ({clash.dataset.templates_path})"
          if clash
          else "another registered task"
        )
        raise CatalogError(
          f"{spec.file}: dataset {spec.label}: prompt {info.prompt.name!r} "
          f"({spec.templates_path}) gets task name {info.name!r}, already taken by "
          f"{other}. Rename one of the prompts."
        )
      owner[info.name] = info
      planned.append((info, split_map))
  for info, split_map in planned:
    _add(info, split_map, vocabulary)
  return [info for info, _ in planned]


def unregister(names) -> None:
  for name in names:
    seqio.TaskRegistry.remove(name)
    _INFO.pop(name, None)


def task_info(name: str) -> TaskInfo:
  """t0jax's record of a catalogue task (UnknownNameError for anything else)."""
  for hook in BEFORE_LOOKUP:
    hook()
  if name not in _INFO:
    raise UnknownNameError(name, list(_INFO) + list(seqio.MixtureRegistry.names()))
  return _INFO[name]


def all_task_infos() -> list:
  return list(_INFO.values())


class UnknownNameError(KeyError):
  """No task or mixture by this name; the message lists the closest registered names."""

  def __init__(self, name: str, candidates):
    close = closest_names(name, candidates)
    hint = f" Closest registered names: {', '.join(close)}." if close else ""
    super().__init__(name)
    self.name, self.close = name, close
    self.message = (
      f"no task or mixture named {name!r}.{hint} Run `t0jax tasks` to list the "
      f"mixtures, `t0jax tasks MIXTURE` for their tasks."
    )

  def __str__(self):
    return self.message


def closest_names(name: str, candidates, n: int = 5) -> list:
  candidates = list(candidates)
  close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
  if len(close) < n:  # names are long: also offer those sharing the typed text
    close += [
      c for c in sorted(candidates) if name and name.lower() in c.lower() and c not in close
    ][: n - len(close)]
  return close


def get_task_or_mixture(name: str):
  """The seqio Task or Mixture called `name`; UnknownNameError (listing the closest registered
  names) if there is none. Every t0jax command resolves names through this.

  With a P3 dir set (T0JAX_P3_DIR, --p3_dir), the task, or every task of the mixture, reads
  P3 instead (t0jax/data/p3.py); unsetting it puts the catalogue's own tasks back."""
  for hook in BEFORE_LOOKUP:  # the catalogue re-registers if its prompt collection changed
    hook()
  from t0jax.data import p3, settings
  from t0jax.data.vocab import catalog_vocabulary

  p3_dir = settings.p3_dir()
  if p3_dir:
    found = p3.get_task_or_mixture(name, p3_dir, catalog_vocabulary())
    if found is not None:
      return found
  elif p3.active():
    p3.restore()
  if name in seqio.MixtureRegistry.names():
    return seqio.MixtureRegistry.get(name)
  if name in seqio.TaskRegistry.names():
    return seqio.TaskRegistry.get(name)
  raise UnknownNameError(
    name, list(seqio.MixtureRegistry.names()) + list(seqio.TaskRegistry.names())
  )

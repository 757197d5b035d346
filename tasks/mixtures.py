"""The catalogue's mixtures: T0's (by t-zero's rules, tasks/t0.py) and the demo's.

T0's rate rule (Sanh et al. 2022, as t-zero coded it): every prompt of a training dataset is its
own task; a task's rate is the dataset's number of training examples, except that a dataset with
more than 500,000 training examples gives each of its prompt tasks 500,000 // (its number of
prompts). Counts come from the catalogue's recorded `splits`, so computing rates reads no data.
"""

from __future__ import annotations

import dataclasses
import logging

from t0jax.data.tf_setup import import_tensorflow

import_tensorflow()  # before seqio loads it: quiet, no GPUs for TensorFlow
import seqio

from . import t0
from .t0 import prompt_task_rate

log = logging.getLogger("t0jax.catalog")


@dataclasses.dataclass(frozen=True)
class MixtureDef:
  """A mixture as data: the families its datasets come from and which of their tasks it takes.

  kind "t0": computed by t-zero's rules (tasks/t0.py); kind "train": the datasets' training
  tasks on `train_split`, every prompt, rated by `prompt_task_rate`; kind "score_eval": the
  score-eval twins of original-task prompts on the eval split(s), rated by the eval split's
  size. `alias_of` names the mixture whose tasks this one repeats.
  """

  name: str
  families: tuple = ()
  kind: str = "train"
  description: str = ""
  alias_of: str = ""


MIXTURES = (
  tuple(MixtureDef(name, kind="t0", description=text) for name, text in t0.MIXTURES.items())
  + tuple(
    MixtureDef(alias, kind="t0", alias_of=name, description=f"same as {name}")
    for alias, name in t0.ALIASES.items()
  )
  + (
    MixtureDef("demo_train", ("demo_train",), description="demo: held-in synthetic families"),
    MixtureDef(
      "demo_heldin_score_eval",
      ("demo_train",),
      kind="score_eval",
      description="demo: held-in families' validation splits, rank classification",
    ),
    MixtureDef(
      "demo_heldout_score_eval",
      ("demo_eval",),
      kind="score_eval",
      description="demo: held-out family, zero-shot rank classification",
    ),
    MixtureDef(
      "demo_eval_score_eval",
      ("demo_eval", "demo_train"),
      kind="score_eval",
      description="demo: held-out and held-in score-eval tasks together",
    ),
  )
)


def _family_members(by_dataset: dict, mix: MixtureDef) -> list:
  chosen = []
  for dataset_infos in by_dataset.values():
    spec = dataset_infos[0].dataset
    if not set(mix.families) & set(spec.mixtures):
      continue
    if mix.kind == "train":
      tasks = [i for i in dataset_infos if i.trains]
      chosen += [
        (i.name, prompt_task_rate(spec.num_train_examples(), len(spec.prompts))) for i in tasks
      ]
    else:
      twins = [i for i in dataset_infos if i.score_eval and i.eval_split and i.prompt.original_task]
      chosen += [(i.name, float(spec.splits[i.eval_split])) for i in twins]
  return chosen


def mixture_members(infos, definitions=MIXTURES) -> dict:
  """{mixture name: [(task name, rate), ...]} from registered (or planned) TaskInfos."""
  infos = list(infos)
  by_dataset: dict = {}
  for info in infos:
    by_dataset.setdefault(info.dataset.key, []).append(info)
  t0_members = t0.members(infos)
  return {
    mix.name: (t0_members[mix.name] if mix.kind == "t0" else _family_members(by_dataset, mix))
    for mix in definitions
  }


def register_mixtures(members: dict) -> list:
  """Register each non-empty mixture with seqio; returns the names registered."""
  registered = []
  for name, tasks in members.items():
    if not tasks:
      log.debug("mixture %s has no tasks yet (no catalogue dataset lists it); not registered", name)
      continue
    seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, tasks)
    registered.append(name)
  return registered

"""T0's mixtures (and the demo's), with T0's examples-proportional rates.

Rate rule (Sanh et al. 2022): every prompt of a training dataset is its own task; a task's rate
is the dataset's number of training examples, except that a dataset with more than 500,000
training examples counts as 500,000 / (its number of prompts in the mixture) per prompt task.
Counts come from the catalogue's recorded `splits`, so computing rates reads no data.
"""
from __future__ import annotations

import dataclasses
import logging

from t0jax.data.tf_setup import import_tensorflow

import_tensorflow()  # before seqio loads it: quiet, no GPUs for TensorFlow
import seqio

log = logging.getLogger("t0jax.catalog")

MAX_EXAMPLES_PER_DATASET = 500_000


def prompt_task_rate(num_examples: int, num_prompts: int) -> float:
    """T0's rate for one prompt task of a dataset with `num_examples` training examples."""
    if num_examples > MAX_EXAMPLES_PER_DATASET:
        return MAX_EXAMPLES_PER_DATASET / num_prompts
    return float(num_examples)


@dataclasses.dataclass(frozen=True)
class MixtureDef:
    """A mixture as data: the families its datasets come from and which of their tasks it takes.

    kind "train": the datasets' training tasks on `train_split`, rated by `prompt_task_rate`;
    kind "score_eval": the score-eval twins of original-task prompts on the eval split(s), rated
    by the eval split's size. prompts: "all", "original" (original-task prompts only) or "one"
    (per dataset the first original-task prompt in file order, else its first prompt).
    """
    name: str
    families: tuple
    kind: str = "train"
    prompts: str = "all"
    description: str = ""


MIXTURES = (
    MixtureDef("t0_train", ("t0_train",), description="T0's training mixture (all prompts)"),
    MixtureDef("t0p_train", ("t0p_train",), description="T0+: T0 plus more QA datasets"),
    MixtureDef("t0pp_train", ("t0pp_train",), description="T0++: T0+ plus SuperGLUE"),
    MixtureDef("t0_train_one_prompt", ("t0_train",), prompts="one",
               description="ablation: one prompt per T0 training dataset"),
    MixtureDef("t0_train_original_task_only", ("t0_train",), prompts="original",
               description="ablation: T0 training prompts that do the original task"),
    MixtureDef("t0_eval_score_eval", ("t0_eval",), kind="score_eval",
               description="held-out zero-shot evaluation by rank classification"),
    MixtureDef("demo_train", ("demo_train",), description="demo: held-in synthetic families"),
    MixtureDef("demo_heldin_score_eval", ("demo_train",), kind="score_eval",
               description="demo: held-in families' validation splits, rank classification"),
    MixtureDef("demo_heldout_score_eval", ("demo_eval",), kind="score_eval",
               description="demo: held-out family, zero-shot rank classification"),
    MixtureDef("demo_eval_score_eval", ("demo_eval", "demo_train"), kind="score_eval",
               description="demo: held-out and held-in score-eval tasks together"),
)


def _selected(infos: list, how: str) -> list:
    if how == "all":
        return infos
    original = [i for i in infos if i.prompt.original_task]
    if how == "original":
        return original
    if how == "one":
        return (original or infos)[:1]
    raise ValueError(f"unknown prompt selection {how!r}")


def mixture_members(infos, definitions=MIXTURES) -> dict:
    """{mixture name: [(task name, rate), ...]} from registered (or planned) TaskInfos."""
    by_dataset: dict = {}
    for info in infos:
        by_dataset.setdefault(info.dataset.key, []).append(info)
    members = {}
    for mix in definitions:
        chosen = []
        for dataset_infos in by_dataset.values():
            spec = dataset_infos[0].dataset
            if not set(mix.families) & set(spec.mixtures):
                continue
            if mix.kind == "train":
                tasks = _selected([i for i in dataset_infos if i.trains], mix.prompts)
                chosen += [(i.name, prompt_task_rate(spec.num_train_examples(), len(tasks)))
                           for i in tasks]
            else:
                twins = [i for i in dataset_infos if i.score_eval and i.eval_split
                         and i.prompt.original_task]
                chosen += [(i.name, float(spec.splits[i.eval_split])) for i in twins]
        members[mix.name] = chosen
    return members


def register_mixtures(members: dict) -> list:
    """Register each non-empty mixture with seqio; returns the names registered."""
    registered = []
    for name, tasks in members.items():
        if not tasks:
            log.debug("mixture %s has no tasks yet (no catalogue dataset lists it); not registered",
                      name)
            continue
        seqio.MixtureRegistry.remove(name)
        seqio.MixtureRegistry.add(name, tasks)
        registered.append(name)
    return registered

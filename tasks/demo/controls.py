"""The demo's controls and ablations: training mixtures made from parts of `demo_train`.

Import this module from a gin file (`import t0jax.catalog.demo.controls`, as
gin/experiments/demo_control.gin does); the training data process imports it too. It registers

  demo_only_<family>_train   one held-in family with all its prompts (the single-task control)
  demo_train_<n>_families    the first n held-in families in catalogue order (dataset ablation)
  demo_train_one_prompt      every held-in family with one original-task prompt (prompt ablation)

with the rates `demo_train` gives the same tasks (examples-proportional), so the only difference
from the demo is which tasks are trained on.
"""

import seqio

import t0jax.catalog as catalog


def _dataset(task: str) -> str:
  return catalog.task_info(task).dataset.dataset


def held_in_families() -> list:
  """The held-in datasets of `demo_train`, in catalogue order."""
  names = []
  for task, _ in catalog.mixture_rates("demo_train"):
    if _dataset(task) not in names:
      names.append(_dataset(task))
  return names


def _one_prompt(rates: list) -> list:
  """Per dataset, its first original-task prompt (T0's `one prompt per dataset` ablation)."""
  chosen, seen = [], set()
  for task, rate in rates:
    info = catalog.task_info(task)
    if info.prompt.original_task and info.dataset.dataset not in seen:
      seen.add(info.dataset.dataset)
      chosen.append((task, rate))
  return chosen


def control_mixtures() -> dict:
  """{mixture name: [(task, rate), ...]} of every control and ablation mixture."""
  rates = catalog.mixture_rates("demo_train")
  families = held_in_families()
  out = {}
  for family in families:
    out[f"{family.replace('demo_', 'demo_only_', 1)}_train"] = [
      (t, r) for t, r in rates if _dataset(t) == family
    ]
  for n in range(1, len(families) + 1):
    out[f"demo_train_{n}_families"] = [(t, r) for t, r in rates if _dataset(t) in families[:n]]
  out["demo_train_one_prompt"] = _one_prompt(rates)
  return out


def register() -> list:
  names = []
  for name, tasks in control_mixtures().items():
    seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, tasks)
    names.append(name)
  return names


MIXTURE_NAMES = register()

"""The T0 prompted-task catalogue, registered with SeqIO on import (installed as `t0jax.catalog`).

`import t0jax.catalog` reads `catalog/*.yaml` and the prompt files they point to, plus the demo
family under `demo/`, and registers one seqio Task per (dataset, prompt), the `_score_eval`
twins, and the mixtures: T0's by t-zero's rules (`t0_train`, `t0+_train`, `t0++_train`,
`t0_eval_score_eval`, ...; tasks/t0.py) and the demo's. The T0 datasets' prompts are the
project's own, or promptsource's when a promptsource template tree is set (T0JAX_PROMPTSOURCE,
`t0jax.data.promptsource_dir`, `--promptsource_dir`); a change of that setting after import is
picked up at the next lookup. Nothing is read, downloaded or compiled until a dataset is asked
for. See docs/tasks.md.
"""

import os

from t0jax.data import (
  DataUnavailableError,
  catalog_vocabulary,
  configure,
  set_data_dir,
  set_source,
  set_tfds_data_dir,
  set_vocab,
  skip_counts,
)
from t0jax.data import settings
from t0jax.data.skips import reset as reset_skip_counts
from t0jax.data.vocab import DeferredVocabulary

from . import demo, registry, t0
from .mixtures import (
  MIXTURES,
  MixtureDef,
  mixture_members,
  prompt_task_rate,
  register_mixtures,
)
from .t0 import MAX_EXAMPLES_PER_DATASET
from .registry import (
  TaskInfo,
  UnknownNameError,
  all_task_infos,
  closest_names,
  get_task_or_mixture,
  plan_tasks,
  register_catalog,
  sanitize,
  task_info,
  task_name,
  unregister,
)
from .spec import Catalog, CatalogError, DatasetSpec, PromptInfo, load_catalog

ROOT = os.path.dirname(os.path.abspath(__file__))

DEMO_VOCABULARY = DeferredVocabulary(demo.VOCAB_PATH, extra_ids=0, label="demo")


def mixture_rates(name: str) -> list:
  """[(task name, rate), ...] of a registered mixture, in registration order."""
  mixture = get_task_or_mixture(name)
  return [(task, float(rate)) for task, rate in mixture.rate_per_task_name.items()]


def load_t0_catalog(promptsource_dir=None):
  """The catalogue, its T0 datasets' prompts taken from `promptsource_dir` when given."""
  catalog = load_catalog(ROOT)
  return t0.with_promptsource(catalog, promptsource_dir) if promptsource_dir else catalog


# What the catalogue (not the demo) registered, so a changed promptsource setting can swap it.
_registered = {"promptsource": None, "tasks": [], "mixtures": []}


def _register_t0_catalog(promptsource, catalog) -> None:
  infos = register_catalog(catalog, catalog_vocabulary())
  _registered.update(promptsource=promptsource, tasks=[i.name for i in infos])


def _register_mixtures() -> list:
  import seqio

  for name in _registered["mixtures"]:
    seqio.MixtureRegistry.remove(name)
  _registered["mixtures"] = register_mixtures(mixture_members(all_task_infos()))
  return _registered["mixtures"]


def refresh() -> None:
  """Register the catalogue again if the promptsource setting changed since it was registered
  (gin bindings and command-line flags are applied after `import t0jax.catalog`)."""
  global MIXTURE_NAMES
  promptsource = settings.promptsource_dir()
  if promptsource == _registered["promptsource"]:
    return
  catalog = load_t0_catalog(promptsource)  # a bad tree raises here, with nothing unregistered
  unregister(_registered["tasks"])
  _register_t0_catalog(promptsource, catalog)
  MIXTURE_NAMES = _register_mixtures()


_register_t0_catalog(settings.promptsource_dir(), load_t0_catalog(settings.promptsource_dir()))
register_catalog(load_catalog(demo.ROOT), DEMO_VOCABULARY)
MIXTURE_NAMES = _register_mixtures()
registry.BEFORE_LOOKUP.append(refresh)

__all__ = [
  "Catalog",
  "CatalogError",
  "DEMO_VOCABULARY",
  "DataUnavailableError",
  "DatasetSpec",
  "MAX_EXAMPLES_PER_DATASET",
  "MIXTURES",
  "MIXTURE_NAMES",
  "MixtureDef",
  "PromptInfo",
  "TaskInfo",
  "UnknownNameError",
  "all_task_infos",
  "catalog_vocabulary",
  "closest_names",
  "configure",
  "get_task_or_mixture",
  "load_catalog",
  "load_t0_catalog",
  "mixture_members",
  "mixture_rates",
  "plan_tasks",
  "refresh",
  "prompt_task_rate",
  "register_catalog",
  "register_mixtures",
  "reset_skip_counts",
  "sanitize",
  "set_data_dir",
  "set_source",
  "set_tfds_data_dir",
  "set_vocab",
  "skip_counts",
  "task_info",
  "task_name",
]

"""The T0 prompted-task catalogue, registered with SeqIO on import (installed as `t0jax.catalog`).

`import t0jax.catalog` reads `catalog/*.yaml` and the prompt files they point to, plus the demo
family under `demo/`, and registers one seqio Task per (dataset, prompt), the `_score_eval`
twins, and the mixtures (`t0_train`, `t0p_train`, `t0pp_train`, `t0_eval_score_eval`, the
ablations and the demo's). Nothing is read, downloaded or compiled until a dataset is asked for.
See docs/tasks.md.
"""
import os

from t0jax.data import (DataUnavailableError, catalog_vocabulary, configure, set_data_dir,
                        set_source, set_tfds_data_dir, set_vocab, skip_counts)
from t0jax.data.skips import reset as reset_skip_counts
from t0jax.data.vocab import DeferredVocabulary

from . import demo
from .mixtures import (MAX_EXAMPLES_PER_DATASET, MIXTURES, MixtureDef, mixture_members,
                       prompt_task_rate, register_mixtures)
from .registry import (TaskInfo, UnknownNameError, all_task_infos, closest_names,
                       get_task_or_mixture, plan_tasks, register_catalog, sanitize, task_info,
                       task_name)
from .spec import Catalog, CatalogError, DatasetSpec, PromptInfo, load_catalog

ROOT = os.path.dirname(os.path.abspath(__file__))

DEMO_VOCABULARY = DeferredVocabulary(demo.VOCAB_PATH, extra_ids=0, label="demo")


def mixture_rates(name: str) -> list:
    """[(task name, rate), ...] of a registered mixture, in registration order."""
    mixture = get_task_or_mixture(name)
    return [(task, float(rate)) for task, rate in mixture.rate_per_task_name.items()]


def _register_everything() -> list:
    infos = register_catalog(load_catalog(ROOT), catalog_vocabulary())
    infos += register_catalog(load_catalog(demo.ROOT), DEMO_VOCABULARY)
    return register_mixtures(mixture_members(infos))


MIXTURE_NAMES = _register_everything()

__all__ = [
    "Catalog", "CatalogError", "DEMO_VOCABULARY", "DataUnavailableError", "DatasetSpec",
    "MAX_EXAMPLES_PER_DATASET", "MIXTURES", "MIXTURE_NAMES", "MixtureDef", "PromptInfo",
    "TaskInfo", "UnknownNameError", "all_task_infos", "catalog_vocabulary", "closest_names",
    "configure",
    "get_task_or_mixture", "load_catalog", "mixture_members", "mixture_rates", "plan_tasks",
    "prompt_task_rate", "register_catalog", "register_mixtures", "reset_skip_counts", "sanitize",
    "set_data_dir", "set_source", "set_tfds_data_dir", "set_vocab", "skip_counts", "task_info",
    "task_name",
]

"""Read and check the catalogue: `<root>/catalog/*.yaml` dataset specs and their prompt files.

The format is described in docs/DESIGN.md ("The catalogue format") and docs/tasks.md. Loading
parses YAML only: no data, no vocabulary, no Jinja compilation, so it is safe at import time.
Every error names the catalogue file and the dataset, and says what to change.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Optional

import yaml

from t0jax.data.readers import SourceSpec

# Mixture families a dataset may belong to. `*_train` families train on `train_split`,
# `*_eval` families evaluate the original-task prompts on `eval_splits`.
TRAIN_FAMILIES = ("t0_train", "t0p_train", "t0pp_train", "demo_train")
EVAL_FAMILIES = ("t0_eval", "bias_fairness_eval", "demo_eval")
FAMILIES = TRAIN_FAMILIES + EVAL_FAMILIES

_KEYS = (
  "dataset",
  "subset",
  "hf",
  "tfds",
  "tfds_fields",
  "manual_dir",
  "splits",
  "train_split",
  "eval_splits",
  "cluster",
  "mixtures",
  "generator",
  "field_aliases",
)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogError(ValueError):
  """A catalogue file (or the prompts file it points to) is malformed."""


@dataclasses.dataclass(frozen=True)
class PromptInfo:
  """What registration needs to know about a prompt, without rendering anything."""

  id: str
  name: str
  has_choices: bool
  original_task: bool


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  dataset: str
  subset: Optional[str]
  splits: dict
  train_split: Optional[str]
  eval_splits: tuple
  cluster: Optional[str]
  mixtures: tuple
  source: SourceSpec
  templates_path: str
  prompts: tuple  # PromptInfo, in file order (sorted by name for promptsource's)
  file: str
  # {field name the templates use: today's field name, or {field, values} when the class ids
  # were reordered too}, for hub renames since 2021 (t0jax.prompts.prepare_example)
  field_aliases: dict = dataclasses.field(default_factory=dict)
  prompt_collection: str = "t0jax"  # or "promptsource" (tasks/t0.py swaps the prompts in)

  @property
  def key(self) -> tuple:
    return self.dataset, self.subset

  @property
  def label(self) -> str:
    return self.dataset if self.subset is None else f"{self.dataset}/{self.subset}"

  def num_train_examples(self) -> int:
    return self.splits[self.train_split]


@dataclasses.dataclass
class Catalog:
  root: str
  datasets: list

  def by_key(self) -> dict:
    return {d.key: d for d in self.datasets}


def templates_path(prompts_root: str, dataset: str, subset: Optional[str]) -> str:
  parts = [prompts_root, dataset] + ([subset] if subset else []) + ["templates.yaml"]
  return os.path.join(*parts)


def load_catalog(root: str, families=FAMILIES) -> Catalog:
  """Every dataset of `<root>/catalog/*.yaml`, with prompts from `<root>/prompts/`.

  `families` are the mixture names a dataset may list. Raises CatalogError on any problem.
  """
  root = os.fspath(root)
  datasets: list = []
  seen: dict = {}
  for path in sorted(glob.glob(os.path.join(root, "catalog", "*.yaml"))):
    for spec in _load_file(path, os.path.join(root, "prompts"), families):
      if spec.key in seen:
        raise CatalogError(
          f"{path}: dataset {spec.label} is already defined in "
          f"{seen[spec.key]}; a dataset may appear in only one file."
        )
      seen[spec.key] = path
      datasets.append(spec)
  return Catalog(root=root, datasets=datasets)


def _load_file(path: str, prompts_root: str, families) -> list:
  try:
    with open(path, encoding="utf-8") as f:
      data = yaml.load(f, Loader=_Loader)
  except yaml.YAMLError as e:
    raise CatalogError(f"{path}: not valid YAML: {e}") from None
  if data is None:
    return []
  if not isinstance(data, dict) or not isinstance(data.get("datasets"), list):
    raise CatalogError(
      f"{path}: expected a mapping with a `datasets:` list of dataset specs (see docs/tasks.md)."
    )
  unknown = sorted(set(data) - {"datasets"})
  if unknown:
    raise CatalogError(f"{path}: unknown top-level key(s) {unknown}; only `datasets` is read.")
  return [_spec(path, i, entry, prompts_root, families) for i, entry in enumerate(data["datasets"])]


def _spec(path: str, i: int, entry, prompts_root: str, families) -> DatasetSpec:
  if not isinstance(entry, dict) or "dataset" not in entry:
    raise CatalogError(
      f"{path}: entry {i + 1} of `datasets` is not a mapping with a `dataset` key."
    )
  dataset = str(entry["dataset"])
  subset = None if entry.get("subset") is None else str(entry["subset"])
  label = dataset if subset is None else f"{dataset}/{subset}"

  def fail(message: str):
    raise CatalogError(f"{path}: dataset {label}: {message}")

  unknown = sorted(set(entry) - set(_KEYS))
  if unknown:
    fail(f"unknown key(s) {unknown}; allowed keys: {', '.join(_KEYS)}.")
  if "/" in dataset or (subset and "/" in subset):
    fail("names may not contain '/': write `dataset: super_glue` and `subset: rte`.")
  hf = entry.get("hf")
  if hf is None and not entry.get("generator"):
    fail("missing `hf: {path: ..., name: ...}` (the Hugging Face load_dataset arguments).")
  if hf is not None and (
    not isinstance(hf, dict) or not hf.get("path") or set(hf) - {"path", "name"}
  ):
    fail(f"`hf` must be a mapping with `path` and optional `name`, got {hf!r}.")
  splits = entry.get("splits")
  if (
    not isinstance(splits, dict)
    or not splits
    or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in splits.values())
  ):
    fail(
      "missing or malformed `splits`: give a mapping split -> number of examples, "
      "e.g. {train: 2490, validation: 277}."
    )
  splits = {str(k): v for k, v in splits.items()}
  train_split = entry.get("train_split")
  eval_splits = entry.get("eval_splits") or []
  if isinstance(eval_splits, str) or not isinstance(eval_splits, list):
    fail(f"`eval_splits` must be a list of split names, got {eval_splits!r}.")
  for split in ([train_split] if train_split is not None else []) + list(eval_splits):
    if str(split) not in splits:
      fail(
        f"split {split!r} (in `train_split`/`eval_splits`) is not among `splits` "
        f"({', '.join(splits)})."
      )
  mixtures = entry.get("mixtures") or []
  if not isinstance(mixtures, list):
    fail(f"`mixtures` must be a list, got {mixtures!r}.")
  for family in mixtures:
    if family not in families:
      fail(f"unknown mixture {family!r}; known mixtures: {', '.join(families)}.")
    if family.endswith("_train") and train_split is None:
      fail(f"it is in mixture {family!r} but has no `train_split`.")
    if family.endswith("_eval") and not eval_splits:
      fail(f"it is in mixture {family!r} but has no `eval_splits`.")
  tfds_fields = entry.get("tfds_fields") or {}
  if not isinstance(tfds_fields, dict) or not all(
    isinstance(k, str) and isinstance(v, str) for k, v in tfds_fields.items()
  ):
    fail(f"`tfds_fields` must map TFDS feature names to HF field names, got {tfds_fields!r}.")
  if tfds_fields and not entry.get("tfds"):
    fail("`tfds_fields` is given but `tfds` is not.")

  aliases = entry.get("field_aliases") or {}
  if not isinstance(aliases, dict) or not all(
    isinstance(k, str) and _valid_alias(v) for k, v in aliases.items()
  ):
    fail(
      f"`field_aliases` must map a field name the templates use to the dataset's current "
      f"field name, or to {{field: NAME, values: [old id of each current id]}} when the "
      f"class ids were reordered too (e.g. {{label_coarse: coarse_label}}), got "
      f"{aliases!r}."
    )

  tpath = templates_path(prompts_root, dataset, subset)
  prompts = _prompts(path, label, tpath, dataset, subset)
  source = SourceSpec(
    dataset=dataset,
    subset=subset,
    hf_path=(hf or {}).get("path"),
    hf_name=(hf or {}).get("name"),
    tfds=entry.get("tfds"),
    tfds_fields=dict(tfds_fields),
    manual_dir=bool(entry.get("manual_dir")),
    generator=entry.get("generator"),
    origin=path,
  )
  return DatasetSpec(
    dataset=dataset,
    subset=subset,
    splits=splits,
    train_split=None if train_split is None else str(train_split),
    eval_splits=tuple(str(s) for s in eval_splits),
    cluster=entry.get("cluster"),
    mixtures=tuple(mixtures),
    source=source,
    templates_path=tpath,
    prompts=prompts,
    file=path,
    field_aliases=dict(aliases),
  )


def _prompts(path: str, label: str, tpath: str, dataset: str, subset: Optional[str]) -> tuple:
  # The prompt engine's loader checks the file thoroughly; it parses Jinja but compiles nothing.
  from t0jax.prompts import TemplateError, load_templates_file

  if not os.path.exists(tpath):
    raise CatalogError(
      f"{path}: dataset {label}: its prompts file {tpath} does not exist. "
      f"Write the prompts there (promptsource format) or remove the dataset."
    )
  try:
    loaded = load_templates_file(tpath)
  except TemplateError as e:
    raise CatalogError(f"{path}: dataset {label}: {e}") from None
  if (loaded.dataset, loaded.subset) != (dataset, subset):
    found = loaded.dataset if loaded.subset is None else f"{loaded.dataset}/{loaded.subset}"
    raise CatalogError(
      f"{path}: dataset {label}: its prompts file {tpath} says it is for "
      f"{found}; fix the file's `dataset`/`subset` keys."
    )
  if not loaded.templates:
    raise CatalogError(f"{path}: dataset {label}: {tpath} holds no templates.")
  return prompt_infos(loaded)


def _valid_alias(value) -> bool:
  if isinstance(value, str):
    return True
  return (
    isinstance(value, dict)
    and set(value) == {"field", "values"}
    and isinstance(value["field"], str)
    and isinstance(value["values"], list)
    and all(isinstance(v, int) and not isinstance(v, bool) for v in value["values"])
  )


def prompt_infos(loaded) -> tuple:
  """PromptInfos of a loaded templates file, in its order."""
  return tuple(
    PromptInfo(
      id=t.id,
      name=t.name,
      has_choices=t.answer_choices is not None,
      original_task=bool(t.metadata.original_task),
    )
    for t in loaded.templates.values()
  )

"""Raw examples of one dataset split, as Python dicts, from whichever source holds them.

Sources, in the order `auto` tries them:
  1. local JSONL: `<data_dir>/<dataset>[/<subset>]/<split>.jsonl` when a data dir is set and
     the file exists (one JSON object per line, in the Hugging Face schema);
  2. a Python generator named by the spec (`module:function`, called as `function(split)`);
     the demo family uses this;
  3. TFDS (`tfds: name:version`), renaming features with `tfds_fields`, when its data is
     prepared (or when Hugging Face `datasets` is not installed);
  4. Hugging Face `datasets`, imported only here.

Every reader splits an example range into contiguous per-host shards, so each host reads only its
part, and numbers examples by their position in the whole split (`idx`), which does not depend on
sharding. Shuffling permutes within the host's shard.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import logging
import os
import random
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np

from t0jax.data import settings

log = logging.getLogger("t0jax.data")


class DataUnavailableError(RuntimeError):
  """No configured source can provide the requested dataset split."""


@dataclasses.dataclass(frozen=True)
class SourceSpec:
  """Where the raw examples of one dataset (and subset) can be found."""

  dataset: str
  subset: Optional[str] = None
  hf_path: Optional[str] = None
  hf_name: Optional[str] = None
  tfds: Optional[str] = None
  tfds_fields: Mapping[str, str] = dataclasses.field(default_factory=dict)
  manual_dir: bool = False
  generator: Optional[str] = None
  origin: str = ""  # the catalogue file, for error messages

  @property
  def label(self) -> str:
    return self.dataset if self.subset is None else f"{self.dataset}/{self.subset}"

  def jsonl_path(self, data_dir: str, split: str) -> str:
    parts = [data_dir, self.dataset] + ([self.subset] if self.subset else []) + [f"{split}.jsonl"]
    return os.path.join(*parts)


def shard_range(num_examples: int, index: int, num_shards: int) -> tuple[int, int]:
  """The contiguous [start, end) of shard `index`; shard sizes differ by at most one."""
  if not 0 <= index < num_shards:
    raise ValueError(f"shard index {index} is not in [0, {num_shards})")
  return num_examples * index // num_shards, num_examples * (index + 1) // num_shards


def _order(start: int, end: int, shuffle: bool, seed: Optional[int]) -> list[int]:
  positions = list(range(start, end))
  if shuffle:
    random.Random(seed).shuffle(positions)
  return positions


class SplitReader:
  """One opened split: `len()` examples, `iterate()` yields `(idx, example)` of one shard."""

  kind = "?"

  def __init__(self, spec: SourceSpec, split: str):
    self.spec, self.split = spec, split

  def __len__(self) -> int:
    raise NotImplementedError

  def iterate(
    self,
    shard_index: int = 0,
    num_shards: int = 1,
    shuffle: bool = False,
    seed: Optional[int] = None,
  ) -> Iterator[tuple[int, dict]]:
    raise NotImplementedError

  def describe(self) -> str:
    return f"{self.spec.label} split {self.split!r} from {self.kind}"


class JsonlReader(SplitReader):
  kind = "jsonl"

  def __init__(self, spec: SourceSpec, split: str, path: str):
    super().__init__(spec, split)
    self.path = path
    # Byte offsets of the non-blank lines: lets shards and shuffles seek without holding text.
    self._offsets = []
    with open(path, "rb") as f:
      offset = 0
      for line in f:
        if line.strip():
          self._offsets.append(offset)
        offset += len(line)

  def __len__(self):
    return len(self._offsets)

  def iterate(self, shard_index=0, num_shards=1, shuffle=False, seed=None):
    start, end = shard_range(len(self), shard_index, num_shards)
    with open(self.path, "rb") as f:
      for idx in _order(start, end, shuffle, seed):
        f.seek(self._offsets[idx])
        line = f.readline()
        try:
          example = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(
            f"{self.path}: example {idx + 1} (non-blank line) is not valid "
            f"JSON: {e}. Fix or remove that line."
          ) from None
        if not isinstance(example, dict):
          raise ValueError(
            f"{self.path}: example {idx + 1} is a JSON "
            f"{type(example).__name__}, not an object of fields."
          )
        yield idx, example

  def describe(self):
    return f"{self.spec.label} split {self.split!r} from {self.path}"


class GeneratorReader(SplitReader):
  kind = "generator"

  def __init__(self, spec: SourceSpec, split: str):
    super().__init__(spec, split)
    fn = resolve_callable(spec.generator, f"{spec.origin}: dataset {spec.label}: `generator`")
    examples = fn(split)
    self._examples = examples if isinstance(examples, list) else list(examples)

  def __len__(self):
    return len(self._examples)

  def iterate(self, shard_index=0, num_shards=1, shuffle=False, seed=None):
    start, end = shard_range(len(self), shard_index, num_shards)
    for idx in _order(start, end, shuffle, seed):
      yield idx, dict(self._examples[idx])

  def describe(self):
    return f"{self.spec.label} split {self.split!r} generated by {self.spec.generator}"


def resolve_callable(reference: str, where: str) -> Callable:
  module_name, _, attr = (reference or "").partition(":")
  if not module_name or not attr:
    raise ValueError(f"{where}: {reference!r} is not of the form 'package.module:function'.")
  try:
    return getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"{where}: cannot import {reference!r} ({e}).") from None


def to_python(value: Any) -> Any:
  """TFDS numpy values -> the plain types a Hugging Face example has (str, int, list, dict)."""
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, dict):
    return {k: to_python(v) for k, v in value.items()}
  if isinstance(value, np.ndarray):
    return [to_python(v) for v in value.tolist()] if value.dtype == object else value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (list, tuple)):
    return [to_python(v) for v in value]
  return value


class TfdsReader(SplitReader):
  kind = "tfds"

  def __init__(self, spec: SourceSpec, split: str, builder):
    super().__init__(spec, split)
    self._builder = builder
    try:
      self._num = builder.info.splits[split].num_examples
      self._sliceable = True
    except KeyError:
      # An unprepared builder has no split metadata (e.g. under tfds.testing.mock_data):
      # count by reading, and cut shards out of the full split.
      self._sliceable = False
      self._num = int(sum(1 for _ in self._read(split, shuffle=False, seed=None)))
      log.debug(
        "TFDS %s has no split metadata for %r; counted %d examples by reading",
        spec.tfds,
        split,
        self._num,
      )

  def _read(self, split, shuffle, seed):
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(shuffle_seed=seed)
    try:
      ds = self._builder.as_dataset(split=split, shuffle_files=shuffle, read_config=read_config)
    except (AssertionError, FileNotFoundError, ValueError) as e:
      raise DataUnavailableError(
        f"{self.spec.origin}: dataset {self.spec.label}: TFDS {self.spec.tfds} has no "
        f"prepared data for split {split!r} ({e}). Prepare it with `tfds build` on a "
        f"machine with internet and set T0JAX_TFDS_DATA_DIR, or point T0JAX_DATA_DIR at "
        f"JSONL files."
      ) from None
    return tfds.as_numpy(ds)

  def __len__(self):
    return self._num

  def iterate(self, shard_index=0, num_shards=1, shuffle=False, seed=None):
    start, end = shard_range(self._num, shard_index, num_shards)
    if self._sliceable:
      rows = self._read(f"{self.split}[{start}:{end}]", shuffle, seed)
      offset = start
    else:
      rows = (row for i, row in enumerate(self._read(self.split, False, None)) if start <= i < end)
      offset = start
    rename = self.spec.tfds_fields
    for i, row in enumerate(rows):
      example = {rename.get(k, k): to_python(v) for k, v in row.items()}
      # File shuffling reorders records, so positions only identify examples unshuffled.
      yield (offset + i if not shuffle else -1), example


class HfReader(SplitReader):
  kind = "hf"

  def __init__(self, spec: SourceSpec, split: str):
    super().__init__(spec, split)
    self._ds = _load_hf(spec, split)

  def __len__(self):
    return len(self._ds)

  def iterate(self, shard_index=0, num_shards=1, shuffle=False, seed=None):
    start, end = shard_range(len(self), shard_index, num_shards)
    for idx in _order(start, end, shuffle, seed):
      yield idx, dict(self._ds[idx])


def _load_hf(spec: SourceSpec, split: str):
  jsonl_hint = (
    f"point T0JAX_DATA_DIR at a folder holding "
    f"{spec.jsonl_path('<data_dir>', split)} (one JSON example per line)"
  )
  if spec.manual_dir:
    raise DataUnavailableError(
      f"{spec.origin}: dataset {spec.label} must be downloaded by hand (see its Hugging Face "
      f"dataset card for where to request it); then write split {split!r} as JSONL and "
      f"{jsonl_hint}."
    )
  if not spec.hf_path:
    raise DataUnavailableError(
      f"{spec.origin}: dataset {spec.label} names no Hugging Face "
      f"source (`hf`) and no local data was found; {jsonl_hint}."
    )
  try:
    import datasets  # optional dependency: only users reading from the Hub need it
  except ImportError:
    raise DataUnavailableError(
      f"dataset {spec.label} ({spec.origin}): no local JSONL or prepared TFDS data, and the "
      f"Hugging Face `datasets` package is not installed. Either `pip install datasets` "
      f"(or `pip install t0jax[hf]`) or {jsonl_hint}."
    ) from None
  try:
    return datasets.load_dataset(spec.hf_path, spec.hf_name, split=split)
  except Exception as e:  # the Hub raises many types (network, missing config, split)
    raise DataUnavailableError(
      f"{spec.origin}: dataset {spec.label}: datasets.load_dataset({spec.hf_path!r}, "
      f"{spec.hf_name!r}, split={split!r}) failed: {type(e).__name__}: {e}. Check the "
      f"network and the `hf` entry, or {jsonl_hint}."
    ) from None


def _tfds_builder(spec: SourceSpec):
  import tensorflow_datasets as tfds

  try:
    return tfds.builder(spec.tfds, data_dir=settings.tfds_data_dir())
  except Exception as e:  # unknown names and versions raise several TFDS error types
    raise DataUnavailableError(
      f"{spec.origin}: dataset {spec.label}: TFDS cannot make a builder for {spec.tfds!r}: {e}"
    ) from None


def _hf_installed() -> bool:
  return importlib.util.find_spec("datasets") is not None


def open_split(spec: SourceSpec, split: str) -> SplitReader:
  """Find the source for `spec`'s `split` (see the module docstring) and open it."""
  choice = settings.source()
  data_dir = settings.data_dir()
  if choice in ("auto", "jsonl") and data_dir:
    path = spec.jsonl_path(data_dir, split)
    if os.path.exists(path):
      return JsonlReader(spec, split, path)
  if choice == "jsonl":
    raise DataUnavailableError(
      f"dataset {spec.label} ({spec.origin}): T0JAX_DATA_SOURCE=jsonl but "
      f"{spec.jsonl_path(data_dir or '<T0JAX_DATA_DIR unset>', split)} does not exist."
    )
  if spec.generator and choice in ("auto", "generator"):
    return GeneratorReader(spec, split)
  if spec.tfds and choice in ("auto", "tfds"):
    builder = _tfds_builder(spec)
    if choice == "tfds" or builder.is_prepared() or not _hf_installed():
      return TfdsReader(spec, split, builder)
  if choice in ("generator", "tfds"):
    raise DataUnavailableError(
      f"dataset {spec.label} ({spec.origin}) has no {choice} source but T0JAX_DATA_SOURCE={choice}."
    )
  return HfReader(spec, split)

"""T0's own data: a local copy of bigscience/P3 read as seqio tasks (already prompted and
tokenized: nothing is rendered).

P3 comes in two layouts, both read:
  - today's:  `<p3_dir>/<task>/<split>-00000-of-00001.parquet`;
  - original: `<p3_dir>/data/<task>/<split>.tfrecord-00000-of-00001` + `info.<split>.json` +
    `stats.<split>.json`, i.e. one SeqIO cache per task (read with seqio's own cache reader).
`<p3_dir>` may also be the `data/` folder itself.

Naming: P3's folder names are the task names t-zero registered (REFERENCE.md section 9), which
are also the names the catalogue gives T0's prompts when it reads promptsource's templates. When a
P3 dir is set (T0JAX_P3_DIR, `settings.set_p3_dir`, gin `t0jax.data.configure.p3_dir`,
`--p3_dir`), looking a task or mixture up through the catalogue (`get_task_or_mixture`, which
`t0jax train` and `t0jax eval` use) replaces each task of that name by its P3 task, so
`t0_train` or `t0_eval_score_eval` reads P3. A P3 folder without a catalogue task of its name is
registered under the folder name. Unsetting the dir puts the catalogue's own tasks back.

Features are P3's: `inputs` (no EOS), `targets` (with EOS), the `_pretokenized` strings,
`answer_choices`; `_score_eval` tasks hold one row per answer choice with `idx` [example,
choice], `is_correct` and `weight`, which `t0jax eval` groups back per example.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from typing import Dict, Optional

from t0jax.data.tf_setup import import_tensorflow

tf = import_tensorflow()  # quiet, no GPUs for TensorFlow
import seqio  # noqa: E402

from t0jax.data import caches, readers  # noqa: E402

log = logging.getLogger("t0jax.data")

_PARQUET = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}\.parquet$")
_INFO = re.compile(r"^info\.(?P<split>.+)\.json$")
SHUFFLE_BUFFER = 1000  # seqio's default: P3 rows are token ids, cheap to hold


class P3TaskMissing(FileNotFoundError):
  """A task asked for is not in the P3 dir; the message names both."""


class P3FormatError(ValueError):
  """A P3 file that does not hold what P3 holds; the message names the file."""


def _roots(p3_dir: str) -> list:
  """(layout, folder holding task folders) of the layouts present in `p3_dir`."""
  if not os.path.isdir(p3_dir):
    raise P3TaskMissing(
      f"P3 dir {p3_dir} does not exist (T0JAX_P3_DIR / --p3_dir / gin "
      "t0jax.data.configure.p3_dir). Point it at a local copy of "
      "bigscience/P3."
    )
  roots = [("parquet", p3_dir)]
  if os.path.isdir(os.path.join(p3_dir, "data")):
    roots.append(("tfrecord", os.path.join(p3_dir, "data")))
  else:
    roots.append(("tfrecord", p3_dir))  # the user pointed at P3's `data/` itself
  return roots


_listing: Dict[str, dict] = {}


def available(p3_dir: str) -> dict:
  """{task name: (layout, folder)} of every task folder in `p3_dir` (listed once per dir)."""
  if p3_dir not in _listing:
    found = {}
    for layout, root in _roots(p3_dir):
      for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if name in found or not os.path.isdir(folder):
          continue
        files = os.listdir(folder)
        if layout == "parquet" and any(_PARQUET.match(f) for f in files):
          found[name] = (layout, folder)
        elif layout == "tfrecord" and any(_INFO.match(f) for f in files):
          found[name] = (layout, folder)
    _listing[p3_dir] = found
  return _listing[p3_dir]


def forget_listings() -> None:
  _listing.clear()


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _examples(
  self,
  split: str,
  shuffle: bool = False,
  seed: Optional[int] = None,
  shard_info: Optional[seqio.ShardInfo] = None,
):
  """P3's rows as text, the way `t0jax tasks show` prints a task's examples (P3 has no raw
  examples: its `_pretokenized` strings are the rendered prompts)."""
  ds = self.get_dataset(split, shuffle=shuffle, seed=seed, shard_info=shard_info)
  for row in ds.as_numpy_iterator():
    out = {
      "inputs": _text(row.get("inputs_pretokenized", b"")),
      "targets": _text(row.get("targets_pretokenized", b"")),
    }
    if "idx" in row:
      out["idx"] = row["idx"].tolist() if hasattr(row["idx"], "tolist") else row["idx"]
    if "answer_choices" in row:
      choices = [_text(c) for c in row["answer_choices"]]
      target = out["targets"].strip()
      out["answer_choices"] = choices
      out["answer_idx"] = choices.index(target) if target in choices else -1
    yield out


# --- today's layout: parquet ----------------------------------------------------------------


def _tensor_spec(name: str, arrow_type, where: str):
  import pyarrow as pa

  if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
    inner = _tensor_spec(name, arrow_type.value_type, where)
    return tf.TensorSpec([None], inner.dtype)
  kinds = [
    (pa.types.is_string, tf.string),
    (pa.types.is_large_string, tf.string),
    (pa.types.is_binary, tf.string),
    (pa.types.is_boolean, tf.bool),
    (pa.types.is_int32, tf.int32),
    (pa.types.is_int64, tf.int64),
    (pa.types.is_float32, tf.float32),
    (pa.types.is_float64, tf.float32),
  ]
  for test, dtype in kinds:
    if test(arrow_type):
      return tf.TensorSpec([], dtype)
  raise P3FormatError(
    f"{where}: column {name!r} has type {arrow_type}, which P3 never uses; is this a P3 file?"
  )


class P3ParquetSource(seqio.DataSource):
  """One P3 task in today's layout. Shards are contiguous row ranges over the split's files
  (any number of shards); shuffling visits row groups in a seeded order and rows within each
  group in a seeded order (the task's shuffle buffer mixes further)."""

  def __init__(self, task_name: str, folder: str):
    import pyarrow.parquet as pq

    self.task_name, self.folder = task_name, folder
    files: Dict[str, list] = {}
    for f in sorted(os.listdir(folder)):
      m = _PARQUET.match(f)
      if m:
        files.setdefault(m.group("split"), []).append(os.path.join(folder, f))
    self._files = files
    self._meta = {s: [pq.ParquetFile(p).metadata for p in paths] for s, paths in files.items()}
    super().__init__(
      splits=tuple(files),
      caching_permitted=False,
      num_input_examples={s: sum(m.num_rows for m in ms) for s, ms in self._meta.items()},
    )

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str):
    return list(self._paths(split))

  def __repr__(self):
    return f"P3ParquetSource({self.folder})"

  examples = _examples

  def _paths(self, split: str) -> list:
    if split not in self._files:
      raise P3TaskMissing(
        f"P3 task {self.task_name} ({self.folder}) has no split {split!r}; it "
        f"has {', '.join(self._files)}."
      )
    return self._files[split]

  def signature(self, split: str) -> dict:
    import pyarrow.parquet as pq

    path = self._paths(split)[0]
    schema = pq.read_schema(path)
    spec = {f.name: _tensor_spec(f.name, f.type, path) for f in schema}
    for key in ("inputs", "targets"):
      if key not in spec or spec[key].shape.rank != 1 or not spec[key].dtype.is_integer:
        raise P3FormatError(
          f"{path}: P3 task {self.task_name} needs column {key!r} as a list "
          f"of token ids; it has {spec.get(key, 'no such column')}."
        )
    return spec

  def _row_groups(self, split: str, start: int, end: int) -> list:
    """(file, row group, first row, last row) pieces covering rows [start, end) of the split."""
    pieces, offset = [], 0
    for path, meta in zip(self._paths(split), self._meta[split]):
      for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        lo, hi = max(start, offset), min(end, offset + n)
        if lo < hi:
          pieces.append((path, g, lo - offset, hi - offset))
        offset += n
    return pieces

  def _rows(self, split, shuffle, seed, shard_info, spec):
    import pyarrow.parquet as pq

    index, count = (shard_info.index, shard_info.num_shards) if shard_info else (0, 1)
    start, end = readers.shard_range(self.num_input_examples(split), index, count)
    pieces = self._row_groups(split, start, end)
    rng = random.Random(seed)
    if shuffle:
      rng.shuffle(pieces)
    names = list(spec)
    # A null cell (an example without answer choices, say) reads as its type's empty value.
    empty = {
      k: [] if s.shape.rank else ("" if s.dtype == tf.string else s.dtype.as_numpy_dtype(0))
      for k, s in spec.items()
    }
    for path, g, lo, hi in pieces:
      table = pq.ParquetFile(path).read_row_group(g, columns=names).slice(lo, hi - lo)
      columns = {k: table.column(k).to_pylist() for k in names}
      order = list(range(hi - lo))
      if shuffle:
        rng.shuffle(order)
      for i in order:
        yield {k: empty[k] if columns[k][i] is None else columns[k][i] for k in names}

  def get_dataset(
    self,
    split: str = "train",
    shuffle: bool = True,
    seed: Optional[int] = None,
    shard_info: Optional[seqio.ShardInfo] = None,
    *,
    sequence_length=None,
    use_cached=False,
    num_epochs=1,
  ) -> tf.data.Dataset:
    spec = self.signature(split)
    state = {"pass": 0}

    def generate():
      # Each pass (epoch) reshuffles with the next seed.
      pass_seed = None if seed is None else int(seed) + state["pass"]
      state["pass"] += 1
      yield from self._rows(split, shuffle, pass_seed, shard_info, spec)

    return tf.data.Dataset.from_generator(generate, output_signature=spec)


# --- the original layout: one SeqIO cache per task ------------------------------------------


class P3CacheSource(seqio.DataSource):
  """One P3 task in the original layout, read by seqio's own cache reader, split by split."""

  def __init__(self, task_name: str, folder: str):
    self.task_name, self.folder = task_name, folder
    splits = sorted(m.group("split") for m in map(_INFO.match, os.listdir(folder)) if m)
    self._sources: Dict[str, seqio.DataSource] = {}
    examples = {}
    for split in splits:
      stats = seqio.utils.get_cached_stats_path(folder, split)
      if os.path.exists(stats):
        with open(stats) as f:
          examples[split] = int(json.load(f).get("examples", 0)) or None
    super().__init__(splits=tuple(splits), caching_permitted=False, num_input_examples=examples)

  def __repr__(self):
    return f"P3CacheSource({self.folder})"

  examples = _examples

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def _source(self, split: str):
    if split not in self._sources:
      if split not in self.splits:
        raise P3TaskMissing(
          f"P3 task {self.task_name} ({self.folder}) has no split {split!r} "
          f"(no info.{split}.json); it has {', '.join(self.splits)}."
        )
      info = seqio.utils.get_cached_info_path(self.folder, split)
      try:
        with open(info) as f:
          features = json.load(f)["features"]
      except (ValueError, KeyError) as e:
        raise P3FormatError(
          f"{info} is not a SeqIO cache info file ({type(e).__name__}: {e})."
        ) from e
      for key in ("inputs", "targets"):
        got = features.get(key, {})
        if got.get("dtype") not in ("int32", "int64") or len(got.get("shape") or []) != 1:
          raise P3FormatError(
            f"{info}: P3 task {self.task_name} needs feature {key!r} as int32 "
            f"token ids of shape [null]; the file says {got or 'nothing'}."
          )
      if not os.path.exists(seqio.utils.get_cached_stats_path(self.folder, split)):
        raise P3FormatError(
          f"P3 task {self.task_name}: {self.folder} has info.{split}.json but "
          f"no stats.{split}.json; copy P3's folder whole."
        )
      # seqio's reader of its caches (P3's original layout is exactly one).
      self._sources[split] = seqio.dataset_providers._CachedDataSource(  # pylint: disable=protected-access
        self.folder, split
      )
    return self._sources[split]

  def list_shards(self, split: str):
    return self._source(split).list_shards(split)

  def get_dataset(
    self,
    split: str = "train",
    shuffle: bool = True,
    seed: Optional[int] = None,
    shard_info: Optional[seqio.ShardInfo] = None,
    *,
    sequence_length=None,
    use_cached=False,
    num_epochs=1,
  ) -> tf.data.Dataset:
    return self._source(split).get_dataset(
      split=split, shuffle=shuffle, seed=seed, shard_info=shard_info
    )


# --- registration ---------------------------------------------------------------------------

_replaced: Dict[str, object] = {}  # task or mixture name -> what the catalogue had registered
_registered: Dict[str, str] = {}  # P3 task name -> the P3 dir it reads


def output_features(vocabulary) -> dict:
  return {
    "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=False, dtype=tf.int32),
    "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32),
  }


def _register_task(name: str, p3_dir: str, vocabulary) -> seqio.Task:
  if _registered.get(name) == p3_dir:
    return seqio.TaskRegistry.get(name)
  layout, folder = available(p3_dir)[name]
  source = P3ParquetSource(name, folder) if layout == "parquet" else P3CacheSource(name, folder)
  if name in seqio.TaskRegistry.names():
    old = seqio.TaskRegistry.get(name)
    if name not in _registered:
      _replaced.setdefault(name, old)
    # The replaced task's vocabulary: P3 holds its token ids, and a mixture needs one vocabulary.
    vocabulary = old.output_features["targets"].vocabulary
    seqio.TaskRegistry.remove(name)
  _registered[name] = p3_dir
  return seqio.TaskRegistry.add(
    name,
    source=source,
    output_features=output_features(vocabulary),
    preprocessors=[caches.trim_keeping_eos],
    shuffle_buffer_size=SHUFFLE_BUFFER,
  )


def _missing(names, p3_dir: str, mixture: Optional[str] = None) -> P3TaskMissing:
  shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
  what = f"mixture {mixture}: its task(s) {shown}" if mixture else f"task {shown}"
  return P3TaskMissing(
    f"{what} not found in the P3 dir {p3_dir} (looked for "
    f"{p3_dir}/<task>/<split>-*.parquet and {p3_dir}/data/<task>/info.<split>.json). Use a "
    "complete copy of bigscience/P3; T0's task names come from T0's own prompts "
    "(T0JAX_PROMPTSOURCE). Unset T0JAX_P3_DIR / --p3_dir to render the catalogue's prompts."
  )


def _register_mixture(name: str, p3_dir: str, vocabulary) -> seqio.Mixture:
  mixture = seqio.MixtureRegistry.get(name)
  missing = [t.name for t in mixture.tasks if t.name not in available(p3_dir)]
  if missing:
    raise _missing(missing, p3_dir, mixture=name)
  rates = dict(mixture.rate_per_task_name)
  for member in rates:
    if member in seqio.MixtureRegistry.names():
      _register_mixture(member, p3_dir, vocabulary)
    else:
      _register_task(member, p3_dir, vocabulary)
  if all(seqio.TaskRegistry.get(t.name) is t for t in mixture.tasks):
    return mixture
  # seqio's mixtures hold task objects: rebuild it over the P3 tasks, with the same rates.
  _replaced.setdefault(name, mixture)
  seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, list(rates.items()))


def get_task_or_mixture(name: str, p3_dir: str, vocabulary):
  """The mixture or task `name` reading P3 from `p3_dir` (registered or swapped in now); None
  when neither P3 nor seqio knows the name. P3TaskMissing for a registered task, or a member
  of a registered mixture, that P3 does not hold."""
  if name in seqio.MixtureRegistry.names():
    return _register_mixture(name, p3_dir, vocabulary)
  if name in available(p3_dir):
    return _register_task(name, p3_dir, vocabulary)
  if name in seqio.TaskRegistry.names():
    raise _missing([name], p3_dir)
  return None


def restore() -> None:
  """Put back every task and mixture the catalogue had before P3 replaced them."""
  for name in list(_registered):
    seqio.TaskRegistry.remove(name)
  for name, provider in _replaced.items():
    registry = seqio.MixtureRegistry if isinstance(provider, seqio.Mixture) else seqio.TaskRegistry
    registry.remove(name)
    registry.add_provider(name, provider)
  _registered.clear()
  _replaced.clear()


def active() -> bool:
  return bool(_registered)

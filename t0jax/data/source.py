"""`PromptedDataSource`: a seqio DataSource that reads raw examples and renders one prompt.

Prompting is Jinja, which runs in Python, so the source iterates raw examples as dicts, renders
them, and hands strings to tf.data through `from_generator`. seqio's FunctionDataSource cannot
be used: it refuses more than one shard, and every host of a multi-host run must read only its
own shard. Sharding is arbitrary here (contiguous example ranges), so seqio passes `shard_info`
straight through.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Mapping, Optional

from t0jax.data.tf_setup import import_tensorflow

tf = import_tensorflow()  # quiet, GPUs hidden: rendering is Python, JAX owns the accelerators
import seqio  # noqa: E402

from t0jax.data import readers, skips  # noqa: E402

TRAIN_SIGNATURE = {
  "inputs": tf.TensorSpec([], tf.string),
  "targets": tf.TensorSpec([], tf.string),
}
SCORE_EVAL_SIGNATURE = {
  **TRAIN_SIGNATURE,
  "answer_choices": tf.TensorSpec([None], tf.string),
  "answer_idx": tf.TensorSpec([], tf.int32),
  "idx": tf.TensorSpec([], tf.int64),
}


@dataclasses.dataclass(frozen=True)
class PromptRef:
  templates_path: str
  template_id: str
  template_name: str


@functools.lru_cache(maxsize=None)
def _templates_file(path: str):
  from t0jax.prompts import load_templates_file  # keeps Jinja out of `import t0jax.catalog`

  return load_templates_file(path)


def load_template(prompt: PromptRef):
  templates = _templates_file(os.fspath(prompt.templates_path)).templates
  if prompt.template_id not in templates:
    raise KeyError(
      f"{prompt.templates_path}: template id {prompt.template_id} "
      f"({prompt.template_name!r}) is gone; re-import t0jax.catalog."
    )
  return templates[prompt.template_id]


def render_examples(task_name: str, template, rows, score_eval: bool, aliases=None):
  """Rendered examples (dicts of Python values) from `(idx, raw example)` pairs, counting every
  example the prompt cannot use (see `skips`) instead of failing on it. Training skips
  unlabeled examples; score-eval keeps them (answer_idx -1), as predictions need them.
  `aliases` maps field names the templates use to the data's (catalogue `field_aliases`)."""
  from t0jax.prompts import TemplateError, apply_or_skip

  read = emitted = 0
  for idx, example in rows:
    read += 1
    try:
      rendered, reason = apply_or_skip(
        template, example, require_target=not score_eval, aliases=aliases
      )
    except TemplateError as e:
      rendered, reason = None, f"template_error:{type(e).__name__}"
    if rendered is None:
      skips.count(task_name, template.name, reason or "empty")
      continue
    choices = rendered.choices or []
    target = rendered.target
    answer_idx = choices.index(target) if target in choices else -1
    if choices and answer_idx < 0:
      skips.count(task_name, template.name, "target_not_in_choices")
    if not score_eval:
      emitted += 1
      yield {"inputs": rendered.input, "targets": target}
      continue
    if not choices:
      skips.count(task_name, template.name, "no_answer_choices")
      continue
    emitted += 1
    yield {
      "inputs": rendered.input,
      "targets": target,
      "answer_choices": choices,
      "answer_idx": answer_idx,
      "idx": idx,
    }
  skips.report(task_name, read, emitted)


class PromptedDataSource(seqio.DataSource):
  """Examples of one dataset rendered with one prompt.

  `split_map` maps the split names the task exposes (`train`, `validation`, and the dataset's
  own names) to the dataset's split names; `num_examples` holds the catalogue's recorded counts
  per dataset split, so nothing is read to answer `num_input_examples`.
  """

  def __init__(
    self,
    *,
    task_name: str,
    spec: readers.SourceSpec,
    prompt: PromptRef,
    split_map: Mapping[str, str],
    num_examples: Mapping[str, int],
    score_eval: bool = False,
    field_aliases: Optional[Mapping[str, str]] = None,
  ):
    self.task_name = task_name
    self.field_aliases = dict(field_aliases or {})
    self.spec = spec
    self.prompt = prompt
    self.split_map = dict(split_map)
    self.score_eval = score_eval
    super().__init__(
      splits=tuple(self.split_map),
      num_input_examples={s: num_examples.get(d) for s, d in self.split_map.items()},
      caching_permitted=True,
    )

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str):
    return [self.split_map[split]]

  def __repr__(self):
    return (
      f"PromptedDataSource({self.spec.label}, prompt={self.prompt.template_name!r}, "
      f"score_eval={self.score_eval})"
    )

  def dataset_split(self, split: str) -> str:
    if split not in self.split_map:
      raise ValueError(
        f"task {self.task_name} has no split {split!r}; it has {', '.join(self.split_map)}."
      )
    return self.split_map[split]

  def examples(
    self,
    split: str,
    shuffle: bool = False,
    seed: Optional[int] = None,
    shard_info: Optional[seqio.ShardInfo] = None,
  ):
    """Rendered examples as Python dicts (what `get_dataset` feeds to tf.data)."""
    reader = readers.open_split(self.spec, self.dataset_split(split))
    template = load_template(self.prompt)
    index, count = (shard_info.index, shard_info.num_shards) if shard_info else (0, 1)
    # Score-eval keeps file order: `idx` must identify the example across runs and hosts.
    shuffle = shuffle and not self.score_eval
    rows = reader.iterate(index, count, shuffle=shuffle, seed=seed)
    return render_examples(self.task_name, template, rows, self.score_eval, self.field_aliases)

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
    seed = None if seed is None else int(seed)
    # Opened eagerly so a missing source fails here, with its message, not inside tf.data.
    state = {"fresh": self.examples(split, shuffle, seed, shard_info), "passes": 0}

    def generate():
      # tf.data calls this once per pass (epoch); the first pass uses the opened reader,
      # later ones reshuffle with the next seed (unless seqio cached the first pass).
      examples = state.pop("fresh", None)
      if examples is None:
        state["passes"] += 1
        pass_seed = None if seed is None else seed + state["passes"]
        examples = self.examples(split, shuffle, pass_seed, shard_info)
      yield from examples

    signature = SCORE_EVAL_SIGNATURE if self.score_eval else TRAIN_SIGNATURE
    return tf.data.Dataset.from_generator(generate, output_signature=signature)

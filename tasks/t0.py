"""T0's mixtures by t-zero's own registration rules, over either prompt collection.

bigscience t-zero (`t0/seqio_tasks/tasks.py` with `datasets.csv`, REFERENCE.md section 9)
registered T0's tasks from promptsource 0.1.0. This module holds those rules as data and one
function, `members`, so that the catalogue's mixtures are the same computation whichever prompts
the T0 datasets carry: the project's own (the offline default) or a promptsource template tree
(`T0JAX_PROMPTSOURCE=DIR`, `t0jax.data.promptsource_dir`, `--promptsource_dir`), which
`with_promptsource` swaps in. With promptsource 0.1.0's tree the task names and rates are
t-zero's (and P3's folder names).

datasets.csv's columns map onto each catalogue spec's `mixtures`: do_train BASE = `t0_train`,
GPT_EVAL = `t0p_train` only, SGLUE = `t0pp_train` only; do_eval BASE = `t0_eval`,
BIAS_FAIRNESS = `bias_fairness_eval`; train_size = the recorded size of `train_split`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional

from .spec import Catalog, CatalogError, DatasetSpec, prompt_infos

log = logging.getLogger("t0jax.catalog")

MAX_EXAMPLES_PER_DATASET = 500_000

# Tasks t-zero left out of every mixture: inputs that often exceed 1,024 tokens, and one task
# whose cache was broken.
BLACKLIST = frozenset(
  [
    f"hotpot_qa_{setting}_Generate_{what}"
    for setting in ("distractor", "fullwiki")
    for what in (
      "Explanations",
      "Answer_and_Explanations",
      "Answer",
      "Title_1",
      "Title_2",
      "Question",
    )
  ]
  + [f"tab_fact_tab_fact_tab_fact_{i}" for i in range(1, 8)]
  + [
    "wiki_hop_masked_Choose_Best_Object_Candidate",
    "wiki_hop_masked_Indirect_Question_about_Birthplace_Citizenship_Place_of_Death",
    "narrativeqa_Template_05",
    "ecthr_cases_alleged_violation_prediction_silver_rationales",
    "gigaword_summarize_",
  ]
)

# `t0_train_score_eval` (checkpoint selection) also leaves out the 17 twins whose caches failed
# to build for t-zero...
SCORE_EVAL_CACHE_FAILURES = frozenset(
  [
    f"amazon_polarity_{name}_score_eval"
    for name in (
      "Is_this_product_review_positive",
      "Is_this_review_negative",
      "Is_this_review",
      "User_recommend_this_product",
      "convey_negative_or_positive_sentiment",
      "flattering_or_not",
      "negative_or_positive_tone",
      "user_satisfied",
      "would_you_buy",
    )
  ]
  + [
    f"dbpedia_14_{name}_score_eval"
    for name in (
      "given_a_choice_of_categories_",
      "given_list_what_category_does_the_paragraph_belong_to",
      "pick_one_category_for_the_following_text",
    )
  ]
  + [
    f"wiki_hop_original_choose_best_object_{name}_score_eval"
    for name in (
      "affirmative_1",
      "affirmative_2",
      "affirmative_3",
      "interrogative_1",
      "interrogative_2",
    )
  ]
)

# ...and every task whose name contains one of these (t-zero matched substrings of the name).
TRAIN_SKIP_EVAL = (
  "paws_labeled_final",
  "adversarial_qa_dbidaf",
  "adversarial_qa_dbert",
  "duorc_ParaphraseRC",
  "dream",
  "amazon_polarity",
  "app_reviews",
  "imdb",
  "wiki_bio",
  "gigaword",
  "multi_news",
  "samsum",
  "dbpedia_14",
  "trec",
)

# Mixture name -> description, in the order `t0jax tasks` lists them.
MIXTURES = {
  "t0_train": "T0's training mixture (every prompt of the BASE datasets)",
  "t0+_train": "T0+: T0 plus the GPT-3 evaluation datasets",
  "t0++_train": "T0++: T0+ plus SuperGLUE",
  "t0_eval_score_eval": "held-out zero-shot evaluation by rank classification",
  "t0_train_score_eval": "checkpoint selection: original-task prompts of T0's training datasets",
  "t0_train_one_og_prompt": "ablation: one original-task prompt per T0 training dataset",
  "t0_train_all_og_prompts": "ablation: every original-task prompt of T0's training datasets",
  "bias_fairness_eval_score_eval": "bias and fairness evaluation by rank classification",
}
# t0jax's earlier spellings of the same mixtures (seqio names may hold `+`, gin strings and
# shells are easier without).
ALIASES = {"t0p_train": "t0+_train", "t0pp_train": "t0++_train"}


def do_train(spec: DatasetSpec) -> Optional[str]:
  """datasets.csv's `do_train` for a catalogue dataset."""
  for family, stage in (("t0_train", "BASE"), ("t0p_train", "GPT_EVAL"), ("t0pp_train", "SGLUE")):
    if family in spec.mixtures:
      return stage
  return None


def do_eval(spec: DatasetSpec) -> Optional[str]:
  if "t0_eval" in spec.mixtures:
    return "BASE"
  return "BIAS_FAIRNESS" if "bias_fairness_eval" in spec.mixtures else None


def is_t0_dataset(spec: DatasetSpec) -> bool:
  return do_train(spec) is not None or do_eval(spec) is not None


def prompt_task_rate(num_examples: int, num_prompts: int) -> float:
  """t-zero's rate for each prompt task of a dataset with `num_examples` training examples and
  `num_prompts` templates (all of them, whichever the mixture takes)."""
  if num_examples > MAX_EXAMPLES_PER_DATASET:
    return float(MAX_EXAMPLES_PER_DATASET // num_prompts)
  return float(num_examples)


def training_cap(spec: DatasetSpec) -> float:
  """The rate of every training task of `spec` (train_size is its recorded `train_split`)."""
  size = spec.splits.get(spec.train_split, 0) if spec.train_split else 0
  return prompt_task_rate(size, len(spec.prompts))


def _score_rate(info) -> float:
  """seqio's `mixing_rate_num_examples(maximum=500_000)` as t-zero used it: the task's `train`
  examples. Tasks without a train split (story_cloze, the bias sets) get their eval split's,
  where t-zero's code has no number."""
  spec = info.dataset
  train = f"train{info.split_suffix}" if info.split_suffix else spec.train_split or "train"
  size = spec.splits.get(train)
  if size is None:
    size = spec.splits.get(info.eval_split, 0)
  return float(min(size, MAX_EXAMPLES_PER_DATASET))


def members(infos) -> dict:
  """{mixture name: [(task name, rate), ...]} of T0's mixtures (and their aliases), computed
  from planned or registered TaskInfos exactly as t-zero computed them."""
  base = {i.name: i for i in infos if not i.score_eval and is_t0_dataset(i.dataset)}
  twins = [i for i in infos if i.score_eval and i.base_name in base]
  train = {stage: [] for stage in ("BASE", "GPT_EVAL", "SGLUE")}
  for info in base.values():
    stage = do_train(info.dataset)
    if stage and info.trains:
      train[stage].append(info)

  def rated(tasks):
    return [(i.name, training_cap(i.dataset)) for i in tasks if i.name not in BLACKLIST]

  def scored(tasks):
    return [(i.name, _score_rate(i)) for i in tasks]

  original_base = [i for i in train["BASE"] if i.prompt.original_task]
  first_original = {}
  for info in sorted(original_base, key=lambda i: i.prompt.name):
    first_original.setdefault(info.dataset.key, info)
  out = {
    "t0_train": rated(train["BASE"]),
    "t0+_train": rated(train["BASE"] + train["GPT_EVAL"]),
    "t0++_train": rated(train["BASE"] + train["GPT_EVAL"] + train["SGLUE"]),
    "t0_eval_score_eval": scored(
      t
      for t in twins
      if do_eval(t.dataset) == "BASE"
      and t.prompt.original_task
      and t.eval_split
      and t.base_name not in BLACKLIST
    ),
    "t0_train_score_eval": scored(
      t
      for t in twins
      if t.base_name in {i.name for i in original_base}
      and t.base_name not in BLACKLIST
      and t.name not in SCORE_EVAL_CACHE_FAILURES
      and not any(skip in t.name for skip in TRAIN_SKIP_EVAL)
    ),
    "t0_train_one_og_prompt": rated(first_original.values()),
    "t0_train_all_og_prompts": rated(original_base),
    "bias_fairness_eval_score_eval": scored(
      t for t in twins if do_eval(t.dataset) == "BIAS_FAIRNESS"
    ),
  }
  out.update({alias: out[name] for alias, name in ALIASES.items()})
  return out


def resolve_tree(path: str) -> str:
  """The folder of promptsource's `<dataset>/<subset>/templates.yaml` files under `path` (the
  folder itself, or its `templates/` or `promptsource/templates/`); CatalogError if none."""
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  if not os.path.isdir(path):
    raise CatalogError(
      f"promptsource dir {path} (T0JAX_PROMPTSOURCE / --promptsource_dir / "
      f"t0jax.data.promptsource_dir) does not exist; run `t0jax prompts "
      f"fetch` to get promptsource's templates."
    )
  for candidate in (
    path,
    os.path.join(path, "templates"),
    os.path.join(path, "promptsource", "templates"),
  ):
    if os.path.isdir(candidate) and _holds_templates(candidate):
      return candidate
  raise CatalogError(
    f"promptsource dir {path} holds no <dataset>/[<subset>/]templates.yaml "
    f"file; point T0JAX_PROMPTSOURCE (or --promptsource_dir) at the "
    f"`promptsource/templates/` folder of a checkout or sdist, or run "
    f"`t0jax prompts fetch`."
  )


def _holds_templates(root: str) -> bool:
  for entry in os.scandir(root):
    if entry.is_dir() and (
      os.path.exists(os.path.join(entry.path, "templates.yaml"))
      or any(
        os.path.exists(os.path.join(sub.path, "templates.yaml"))
        for sub in os.scandir(entry.path)
        if sub.is_dir()
      )
    ):
      return True
  return False


def with_promptsource(catalog: Catalog, tree: str) -> Catalog:
  """`catalog` with every T0 dataset's prompts taken from the promptsource tree `tree`, in
  sorted-name order as t-zero took them. A T0 dataset the tree lacks is left out, as t-zero
  left it out (promptsource 0.1.0 has no jigsaw_toxicity_pred templates), with a warning;
  a tree holding none of them is an error."""
  from t0jax.prompts import TemplateError, load_templates_file

  root = resolve_tree(tree)
  datasets, missing, found = [], [], 0
  for spec in catalog.datasets:
    if not is_t0_dataset(spec):
      datasets.append(spec)
      continue
    path = os.path.join(
      root, spec.dataset, *([spec.subset] if spec.subset else []), "templates.yaml"
    )
    if not os.path.exists(path):
      missing.append(spec.label)
      continue
    try:
      loaded = load_templates_file(path)
    except TemplateError as e:
      raise CatalogError(f"promptsource dir {root}: {e}") from None
    prompts = tuple(sorted(prompt_infos(loaded), key=lambda p: p.name))
    datasets.append(
      dataclasses.replace(
        spec, templates_path=path, prompts=prompts, prompt_collection="promptsource"
      )
    )
    found += 1
  if not found:
    raise CatalogError(
      f"promptsource dir {root} holds templates for none of T0's datasets; "
      f"point it at promptsource 0.1.0's `promptsource/templates/` "
      f"(`t0jax prompts fetch`)."
    )
  if missing:
    log.warning(
      "promptsource dir %s has no templates for %s: left out of T0's mixtures, as "
      "t-zero left them out.",
      root,
      ", ".join(missing),
    )
  return Catalog(root=catalog.root, datasets=datasets)


def check_prompts(catalog: Catalog, fixtures_dir: str) -> list:
  """Problems found by checking every T0 dataset's templates against the fields of its fixture
  rows (the hub's current schema), after the hyphen rule and the spec's `field_aliases`: one
  line per template reading a field no row has, and per template that fails to render a row.
  Run it on a promptsource tree (`t0jax tasks check-prompts --promptsource_dir DIR`) to find
  the renames that need a `field_aliases` entry. [] means every template fits."""
  import json

  from t0jax.prompts import TemplateError, load_templates_file, prepare_example
  from t0jax.prompts.render import fields_used

  problems = []
  for spec in catalog.datasets:
    if not is_t0_dataset(spec):
      continue
    name = spec.dataset + (f"__{spec.subset}" if spec.subset else "")
    path = os.path.join(fixtures_dir, f"{name}.jsonl")
    if not os.path.exists(path):
      problems.append(f"{spec.label}: no fixture rows ({path}) to check its prompts against.")
      continue
    with open(path, encoding="utf-8") as f:
      rows = [json.loads(line) for line in f if line.strip()]
    fields = set().union(*(prepare_example(r, spec.field_aliases) for r in rows))
    for template in load_templates_file(spec.templates_path).templates.values():
      unknown = sorted(fields_used(template) - fields)
      if unknown:
        problems.append(
          f"{spec.label}: template {template.name!r} ({spec.templates_path}) reads "
          f"field(s) {', '.join(unknown)} that no row has (fields: "
          f"{', '.join(sorted(fields))}); add `field_aliases` to the dataset's spec in "
          f"{spec.file} if the hub renamed them."
        )
        continue
      for row in rows:
        try:
          template.apply(row, require_target=False, aliases=spec.field_aliases)
        except TemplateError as e:
          problems.append(f"{spec.label}: {e}")
          break
  return problems

"""T0's prompts from a promptsource template tree, registered by t-zero's rules (tasks/t0.py).

The tree is written by these tests in promptsource's file layout, with wording of their own:
three templates per catalogued T0 dataset plus a few whose names or fields exercise one rule each
(the naming formula, the blacklist, the skip lists, field aliases, the pipe placeholder).
"""

import io
import logging
import os
import tarfile

import pytest
import yaml

import t0jax.catalog as catalog
from t0jax.catalog import t0, testing
from t0jax.data import settings, skips
from t0jax.prompts import fetch

CHOICES = "no ||| yes"
GENERIC = [("Alpha one", True, CHOICES), ("beta - two", False, None), ("Gamma (three)", True, None)]
# (dataset, subset) -> extra templates: (name, original_task, answer_choices, jinja or None)
EXTRAS = {
  ("gigaword", None): [("summarize ", False, None, None)],  # t-zero's "gigaword_summarize_"
  ("dbpedia_14", None): [("given a choice of categories ", True, CHOICES, None)],
  ("wiki_hop", "original"): [("choose_best_object_affirmative_1", True, CHOICES, None)],
  ("trec", None): [
    (
      "which kind",
      True,
      "a ||| b ||| c ||| d ||| e ||| f",
      "Kind of: {{ text }} ||| {{ answer_choices[label_coarse] }}",
    )
  ],
  ("multi_news", None): [
    (
      "count the articles",
      False,
      None,
      '{% set docs = document.split("3ed2dface8203c4c9dfb1a5dc58e41e0||")'
      ' | reject("equalto", "") | list %}{{ docs | length }} articles '
      "||| {{ docs[0] | trim }}",
    )
  ],
  ("super_glue", "rte"): [
    ("reads a field nobody has", True, CHOICES, "{{ no_such_field }} ||| yes")
  ],
}


def _entry(name, original, choices, jinja):
  return {
    "id": f"id-{name}",
    "name": name,
    "jinja": jinja or "Answer yes or no. ||| yes",
    "answer_choices": choices,
    "reference": "",
    "metadata": {
      "original_task": original,
      "choices_in_prompt": False,
      "metrics": ["Accuracy"],
      "languages": ["en"],
    },
  }


def _write_templates(root, dataset, subset, entries):
  folder = os.path.join(root, dataset, *([subset] if subset else []))
  os.makedirs(folder, exist_ok=True)
  body = {
    "dataset": dataset,
    **({"subset": subset} if subset else {}),
    "templates": {e["id"]: e for e in entries},
  }
  with open(os.path.join(folder, "templates.yaml"), "w", encoding="utf-8") as f:
    yaml.safe_dump(body, f, sort_keys=False)


def _t0_specs():
  return [s for s in catalog.load_catalog(catalog.ROOT).datasets if t0.is_t0_dataset(s)]


def _templates_of(spec):
  extras = [(n, o, c, j) for n, o, c, j in EXTRAS.get(spec.key, [])]
  return [(n, o, c, None) for n, o, c in GENERIC] + extras


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  """A checkout-like folder: `<root>/promptsource/templates/<dataset>/<subset>/...`."""
  root = tmp_path_factory.mktemp("checkout")
  templates = root / "promptsource" / "templates"
  for spec in _t0_specs():
    _write_templates(
      str(templates), spec.dataset, spec.subset, [_entry(*t) for t in _templates_of(spec)]
    )
  _write_templates(str(templates), "not_in_t0", None, [_entry("x", True, None, None)])
  return str(root)


@pytest.fixture(scope="module")
def registered(tree):
  settings.set_promptsource_dir(tree)
  catalog.refresh()
  yield {name: dict(catalog.mixture_rates(name)) for name in catalog.MIXTURE_NAMES}
  settings.set_promptsource_dir(None)
  catalog.refresh()


def _specs(stage):
  return [s for s in _t0_specs() if t0.do_train(s) == stage]


def _name(spec, template):
  return catalog.task_name(spec.dataset, spec.subset, template)


def test_task_names_follow_t_zero_formula():
  assert (
    catalog.task_name("super_glue", "wsc.fixed", "does the pronoun refer to")
    == "super_glue_wsc.fixed_does_the_pronoun_refer_to"
  )
  assert (
    catalog.task_name("dbpedia_14", None, "given a choice of categories ")
    == "dbpedia_14_given_a_choice_of_categories_"
  )
  # Runs of other characters become one `_`; existing underscores are kept, never collapsed.
  assert catalog.task_name("ds", "sub", "a -- b__c (d)") == "ds_sub_a_b__c_d_"
  assert catalog.task_name("ds", None, "Ünïcode ok") == "ds_Ünïcode_ok"


def test_t0_train_holds_every_template_of_the_base_datasets_at_t_zero_rates(registered):
  mix = registered["t0_train"]
  expected = {}
  for spec in _specs("BASE"):
    names = [t[0] for t in _templates_of(spec)]
    size = spec.splits[spec.train_split]
    rate = 500_000 // len(names) if size > 500_000 else size
    expected.update({_name(spec, n): float(rate) for n in names})
  del expected["gigaword_summarize_"]  # blacklisted
  assert mix == expected
  assert mix["gigaword_Alpha_one"] == 500_000 // 4  # 3,803,957 examples, 4 templates
  assert mix["trec_which_kind"] == 5452.0


def test_blacklisted_task_is_registered_but_in_no_mixture(registered):
  assert catalog.get_task_or_mixture("gigaword_summarize_").name == "gigaword_summarize_"
  assert not any("gigaword_summarize_" in rates for rates in registered.values())


def test_plus_mixtures_add_gpt_eval_then_superglue_and_keep_their_t0jax_spellings(registered):
  def names(stages):
    return {_name(s, t[0]) for st in stages for s in _specs(st) for t in _templates_of(s)}

  assert set(registered["t0+_train"]) == names(["BASE", "GPT_EVAL"]) - t0.BLACKLIST
  assert set(registered["t0++_train"]) == names(["BASE", "GPT_EVAL", "SGLUE"]) - t0.BLACKLIST
  assert registered["t0p_train"] == registered["t0+_train"]
  assert registered["t0pp_train"] == registered["t0++_train"]


def test_anli_rounds_are_tasks_with_their_own_split_mapping(registered):
  task = catalog.get_task_or_mixture("anli_Alpha_one_r2")
  assert task.source.split_map["train"] == "train_r2"
  assert task.source.split_map["validation"] == "dev_r2"
  assert task.source.split_map["test"] == "test_r2"
  assert "anli_Alpha_one" not in catalog.MIXTURE_NAMES and not any(
    t.startswith("anli") for t in registered["t0_train"]
  )
  # Rated as seqio's mixing_rate_num_examples rated it: the round's training examples.
  assert registered["t0_eval_score_eval"]["anli_Alpha_one_r1_score_eval"] == 16946.0


def test_score_eval_twins_exist_only_for_templates_with_answer_choices(registered):
  assert catalog.get_task_or_mixture("imdb_Alpha_one_score_eval").name.endswith("_score_eval")
  with pytest.raises(catalog.UnknownNameError):
    catalog.get_task_or_mixture("imdb_beta_two_score_eval")
  assert catalog.task_info("dbpedia_14_given_a_choice_of_categories__score_eval").score_eval


def test_t0_eval_score_eval_holds_original_task_twins_of_the_eval_datasets(registered):
  expected = set()
  for spec in _t0_specs():
    if t0.do_eval(spec) != "BASE":
      continue
    rounds = [f"_{s.split('_')[1]}" for s in spec.eval_splits] if spec.dataset == "anli" else [""]
    for name, original, choices, _ in _templates_of(spec):
      if original and choices:
        expected |= {_name(spec, name) + r + "_score_eval" for r in rounds}
  assert set(registered["t0_eval_score_eval"]) == expected
  assert registered["t0_eval_score_eval"]["super_glue_rte_Alpha_one_score_eval"] == 2490.0


def test_t0_train_score_eval_drops_failed_caches_and_skipped_datasets(registered):
  mix = set(registered["t0_train_score_eval"])
  assert "wiki_hop_original_Alpha_one_score_eval" in mix
  assert "wiki_hop_original_choose_best_object_affirmative_1_score_eval" not in mix  # cache
  assert not any(skip in t for t in mix for skip in t0.TRAIN_SKIP_EVAL)
  assert "imdb_Alpha_one_score_eval" not in mix and "trec_which_kind_score_eval" not in mix
  base = {_name(s, "Alpha one") for s in _specs("BASE")}
  assert mix == {
    b + "_score_eval" for b in base if not any(skip in b for skip in t0.TRAIN_SKIP_EVAL)
  }


def test_original_task_ablations_take_t_zero_choice_of_templates(registered):
  one = registered["t0_train_one_og_prompt"]
  # First original-task template in sorted-name order: "Alpha one" < "Gamma (three)" < ...;
  # dbpedia_14's "given a choice..." sorts after "Gamma" (uppercase first), as in t-zero.
  assert set(one) == {_name(s, "Alpha one") for s in _specs("BASE")}
  assert one["gigaword_Alpha_one"] == 125_000.0  # the whole dataset's cap
  every = set(registered["t0_train_all_og_prompts"])
  assert "gigaword_Gamma_three_" in every and "gigaword_beta_two" not in every
  assert "dbpedia_14_given_a_choice_of_categories_" in every


def test_bias_fairness_mixture_holds_every_twin_of_the_bias_datasets(registered):
  expected = {
    _name(s, "Alpha one") + "_score_eval" for s in _t0_specs() if t0.do_eval(s) == "BIAS_FAIRNESS"
  }
  assert set(registered["bias_fairness_eval_score_eval"]) == expected
  assert len(expected) == 7  # crows_pairs, jigsaw, axg, wino_bias x 4


def test_tasks_render_the_fixture_rows_with_aliases_and_the_pipe_placeholder(registered, tmp_path):
  testing.fixture_data_dir(
    catalog.load_catalog(catalog.ROOT), os.path.join(catalog.ROOT, "fixtures"), str(tmp_path)
  )
  settings.set_data_dir(str(tmp_path))
  try:
    trec = list(catalog.get_task_or_mixture("trec_which_kind").source.examples("train"))
    news = list(
      catalog.get_task_or_mixture("multi_news_count_the_articles").source.examples("train")
    )
  finally:
    settings.set_data_dir(None)
  # Today's coarse_label 0 (ABBR) is 2021's label_coarse 2: the third choice.
  assert trec[0]["targets"] == "c"
  assert news[0]["inputs"] == "2 articles"


def test_tasks_show_renders_a_promptsource_task_on_the_fixture_rows(registered, capsys):
  from t0jax import cli

  try:
    assert cli.main(["tasks", "show", "trec_which_kind", "--fixtures", "-n", "1"]) == 0
  finally:
    settings.set_data_dir(None)
  out = capsys.readouterr().out
  assert "Kind of: What does the abbreviation UNESCO stand for ?" in out and "target: c" in out


def test_a_template_reading_a_field_no_row_has_is_counted_and_named_once(
  registered, tmp_path, caplog
):
  testing.fixture_data_dir(
    catalog.load_catalog(catalog.ROOT), os.path.join(catalog.ROOT, "fixtures"), str(tmp_path)
  )
  settings.set_data_dir(str(tmp_path))
  skips.reset()
  name = "super_glue_rte_reads_a_field_nobody_has"
  try:
    with caplog.at_level(logging.ERROR, logger="t0jax.data"):
      for _ in range(2):
        assert list(catalog.get_task_or_mixture(name).source.examples("train")) == []
  finally:
    settings.set_data_dir(None)
  rows = len(open(os.path.join(catalog.ROOT, "fixtures", "super_glue__rte.jsonl")).readlines())
  assert catalog.skip_counts()[name] == {"missing_field:no_such_field": 2 * rows}
  named = [r for r in caplog.records if "reads a field nobody has" in r.getMessage()]
  assert len(named) == 1


def test_check_prompts_finds_a_renamed_field_without_its_alias(tree):
  ps_catalog = catalog.load_t0_catalog(tree)
  fixtures = os.path.join(catalog.ROOT, "fixtures")
  problems = t0.check_prompts(ps_catalog, fixtures)
  assert [p for p in problems if "no_such_field" in p] and len(problems) == 1
  import dataclasses

  bare = catalog.Catalog(
    ps_catalog.root,
    [
      dataclasses.replace(s, field_aliases={}) if s.dataset == "trec" else s
      for s in ps_catalog.datasets
    ],
  )
  trec = [p for p in t0.check_prompts(bare, fixtures) if p.startswith("trec:")]
  assert len(trec) == 1 and "label_coarse" in trec[0] and "field_aliases" in trec[0]


def test_unsetting_the_tree_puts_the_catalogues_own_prompts_back(registered, tree):
  settings.set_promptsource_dir(None)
  try:
    own = dict(catalog.mixture_rates("t0_train"))  # the lookup re-registers
    assert "imdb_Alpha_one" not in own
    assert catalog.task_info(next(iter(own))).dataset.prompt_collection == "t0jax"
  finally:
    settings.set_promptsource_dir(tree)
  assert "imdb_Alpha_one" in dict(catalog.mixture_rates("t0_train"))


@pytest.mark.parametrize("layout", ["empty", "unrelated"])
def test_a_promptsource_dir_without_t0_templates_is_a_clear_error(tmp_path, layout):
  if layout == "unrelated":
    _write_templates(str(tmp_path), "not_in_t0", None, [_entry("x", True, None, None)])
  with pytest.raises(catalog.CatalogError, match="promptsource dir .*t0jax prompts fetch"):
    catalog.load_t0_catalog(str(tmp_path))


def test_cli_reports_a_bad_promptsource_dir_in_one_line(tmp_path, capsys):
  from t0jax import cli

  before = settings.promptsource_dir()
  try:
    assert cli.main(["tasks", "check-prompts", "--promptsource_dir", str(tmp_path)]) == 1
  finally:
    settings.set_promptsource_dir(before)
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("t0jax tasks check-prompts: promptsource dir")


def _sdist(path, members):
  with tarfile.open(path, "w:gz") as archive:
    for name, text in members.items():
      data = text.encode()
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  return str(path)


def test_fetch_extracts_only_the_template_tree_of_an_sdist(tmp_path):
  archive = _sdist(
    tmp_path / "promptsource-0.1.0.tar.gz",
    {
      "promptsource-0.1.0/setup.py": "print('never run')",
      "promptsource-0.1.0/promptsource/templates/imdb/templates.yaml": "dataset: imdb\n",
      "promptsource-0.1.0/promptsource/templates/glue/mrpc/templates.yaml": "dataset: glue\n",
    },
  )
  dest = fetch.extract_templates(archive, str(tmp_path / "out" / "templates"))
  found = sorted(
    os.path.relpath(os.path.join(d, f), dest) for d, _, files in os.walk(dest) for f in files
  )
  assert found == ["glue/mrpc/templates.yaml", "imdb/templates.yaml"]
  assert fetch.fetch("0.1.0", dest) == dest  # already there: no download


def test_fetch_refuses_unsafe_or_template_free_archives_and_leaves_nothing(tmp_path):
  unsafe = _sdist(
    tmp_path / "a.tar.gz", {"p/promptsource/templates/../../evil/templates.yaml": "x"}
  )
  with pytest.raises(fetch.FetchError, match="unsafe"):
    fetch.extract_templates(unsafe, str(tmp_path / "t1"))
  empty = _sdist(tmp_path / "b.tar.gz", {"p/setup.py": "x"})
  with pytest.raises(fetch.FetchError, match="no promptsource/templates"):
    fetch.extract_templates(empty, str(tmp_path / "t2"))
  assert sorted(os.listdir(tmp_path)) == ["a.tar.gz", "b.tar.gz"]

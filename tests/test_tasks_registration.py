"""Registration of the catalogue with SeqIO: names, twins, splits, lookup errors, import cost."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import seqio

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import t0jax.catalog as catalog  # noqa: E402
from t0jax.catalog import registry  # noqa: E402

SPECS = (
  catalog.load_catalog(catalog.ROOT).datasets + catalog.load_catalog(catalog.demo.ROOT).datasets
)


def test_sanitize_turns_each_run_of_other_characters_into_one_underscore_as_t_zero_did():
  assert catalog.sanitize("GPT-3 style (yes/no)?") == "GPT_3_style_yes_no_"
  assert catalog.sanitize("keeps__double_ underscores") == "keeps__double__underscores"
  assert (
    catalog.task_name("super_glue", "wsc.fixed", "does p stand for")
    == "super_glue_wsc.fixed_does_p_stand_for"
  )
  assert (
    catalog.task_name("imdb", None, "Movie  Expressed   Sentiment")
    == "imdb_Movie_Expressed_Sentiment"
  )


def test_split_suffix_drops_the_split_kind_prefix():
  assert [registry.split_suffix(s) for s in ("dev_r1", "validation_matched", "test_r3", "r2")] == [
    "r1",
    "matched",
    "r3",
    "r2",
  ]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label)
def test_every_prompt_of_every_dataset_is_a_registered_task_with_a_twin_iff_it_has_choices(spec):
  registered = set(seqio.TaskRegistry.names())
  multi = len(spec.eval_splits) > 1
  for prompt in spec.prompts:
    base = catalog.task_name(spec.dataset, spec.subset, prompt.name)
    names = (
      [registry.sanitize(f"{base}_{registry.split_suffix(s)}") for s in spec.eval_splits]
      if multi
      else [base]
    )
    if multi and spec.train_split:
      names.append(base)
    for name in names:
      assert name in registered
      assert (name + "_score_eval" in registered) == prompt.has_choices
      assert catalog.task_info(name).prompt.id == prompt.id


def test_anli_gets_one_task_per_eval_split_named_by_round():
  anli = [s for s in SPECS if s.dataset == "anli"]
  if not anli:
    pytest.skip("anli is not in the catalogue yet")
  prompt = anli[0].prompts[0]
  base = catalog.task_name("anli", None, prompt.name)
  assert base not in seqio.TaskRegistry.names()  # eval-only: no split-less task
  for split, suffix in (("dev_r1", "r1"), ("dev_r2", "r2"), ("dev_r3", "r3")):
    task = catalog.get_task_or_mixture(f"{base}_{suffix}")
    assert task.source.split_map["validation"] == split
    assert task.num_input_examples("validation") == anli[0].splits[split]


def test_tasks_expose_train_and_validation_aliases_for_the_catalogue_splits():
  spec = next(s for s in SPECS if s.dataset == "demo_reviews")
  name = catalog.task_name(spec.dataset, None, spec.prompts[0].name)
  task = catalog.get_task_or_mixture(name)
  assert task.source.split_map["train"] == "train"
  assert task.source.split_map["validation"] == "validation"
  assert task.num_input_examples("train") == spec.splits["train"]
  twin = catalog.get_task_or_mixture(name + "_score_eval")
  assert catalog.task_info(twin.name).score_eval and catalog.task_info(twin.name).base_name == name


def test_tasks_have_t0_features_inputs_without_eos_targets_with_eos():
  task = catalog.get_task_or_mixture("demo_news_topic_label")
  assert task.output_features["inputs"].add_eos is False
  assert task.output_features["targets"].add_eos is True


def test_unknown_name_error_lists_the_closest_registered_names():
  with pytest.raises(catalog.UnknownNameError) as err:
    catalog.get_task_or_mixture("demo_reviews_likedit")
  assert "demo_reviews_liked_it" in err.value.close
  assert "demo_reviews_liked_it" in str(err.value)
  with pytest.raises(KeyError):  # callers may catch it as a KeyError too
    catalog.get_task_or_mixture("t0_trian")


def test_get_task_or_mixture_returns_mixtures_and_tasks():
  assert isinstance(catalog.get_task_or_mixture("demo_train"), seqio.Mixture)
  assert isinstance(catalog.get_task_or_mixture("demo_news_topic_label"), seqio.Task)


_IMPORT_PROBE = textwrap.dedent("""
    import json, socket, sys, time
    start_cpu, start = time.process_time(), time.time()
    events = []
    def refuse(*a, **k):
        events.append("network")
        raise OSError("network access during import")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    import seqio, jinja2, tensorflow_datasets as tfds
    import seqio.vocabularies as sv
    seqio_done = time.time()
    real_init = tfds.core.DatasetBuilder.__init__
    def builder_init(self, *a, **k):
        events.append("tfds builder")
        return real_init(self, *a, **k)
    tfds.core.DatasetBuilder.__init__ = builder_init
    tfds.builder = lambda *a, **k: events.append("tfds.builder") or None
    real_load = sv._load_model
    sv._load_model = lambda *a, **k: events.append("vocabulary") or real_load(*a, **k)
    real_compile = jinja2.Environment.compile
    def compile_(self, *a, **k):
        events.append("jinja compile")
        return real_compile(self, *a, **k)
    jinja2.Environment.compile = compile_
    import t0jax.catalog
    done = time.time()
    from t0jax.catalog.demo import families
    print(json.dumps({
        "cpu_s": time.process_time() - start_cpu, "wall_s": done - start,
        "registration_s": done - seqio_done, "events": events,
        "tasks": len(seqio.TaskRegistry.names()), "mixtures": t0jax.catalog.MIXTURE_NAMES,
        "demo_generated": families.generate.cache_info().currsize,
        "datasets_module": "datasets" in sys.modules}))
""")


def test_import_registers_everything_without_touching_data_network_or_vocab():
  out = subprocess.run(
    [sys.executable, "-c", _IMPORT_PROBE],
    capture_output=True,
    text=True,
    env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    timeout=120,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert report["events"] == []
  assert report["demo_generated"] == 0 and not report["datasets_module"]
  assert report["tasks"] > 100 and "demo_train" in report["mixtures"]
  # How long the import takes is measured by bench/import_time.py, never asserted here.

"""Every catalogue dataset's tasks run end to end offline and yield tokenized examples.

Datasets with a fixture (`tasks/fixtures/`) are read as local JSONL; datasets with a TFDS source
are also read through `tfds.testing.mock_data`. Both use the demo vocabulary, so no T5 vocabulary
is needed. The parametrization follows whatever the catalogue holds when the tests run.
"""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

import t0jax.catalog as catalog  # noqa: E402
from t0jax.catalog import testing  # noqa: E402
from t0jax.data import readers, settings  # noqa: E402
from t0jax.data.source import load_template, render_examples  # noqa: E402

tf.config.set_visible_devices([], "GPU")

CATALOG = catalog.load_catalog(catalog.ROOT)
FIXTURES = os.path.join(catalog.ROOT, "fixtures")
WITH_FIXTURE = [
  s for s in CATALOG.datasets if os.path.exists(testing.fixture_path(FIXTURES, s.dataset, s.subset))
]
WITH_TFDS = [s for s in CATALOG.datasets if s.source.tfds]
PROBLEMS = ("missing_field:", "template_error:")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("fixture_data"))
  testing.fixture_data_dir(CATALOG, FIXTURES, root)
  return root


@pytest.fixture
def demo_vocab():
  settings.set_vocab(catalog.demo.VOCAB_PATH, extra_ids=0)
  yield
  settings.reset()


def _infos(spec):
  return [i for i in catalog.all_task_infos() if i.dataset.key == spec.key]


def _split(info):
  splits = catalog.get_task_or_mixture(info.name).splits
  preferred = ("validation", "train") if info.score_eval or not info.trains else ("train",)
  return next((s for s in preferred if s in splits), splits[0])


def _check_tokenized(example, score_eval):
  assert example["inputs"].dtype == np.int32 and example["inputs"].ndim == 1
  assert example["inputs"].size == 0 or example["inputs"][-1] != 1  # no EOS on inputs
  assert example["targets"][-1] == 1  # EOS on targets
  if score_eval:
    choices = example["choices"]
    assert len(choices) == len(example["choices_pretokenized"]) >= 1
    assert all(c[-1] == 1 for c in choices)
    if example["answer_idx"] >= 0:
      assert list(choices[example["answer_idx"]]) == list(example["targets"])


def test_every_catalogue_dataset_has_a_fixture():
  missing = sorted(s.label for s in CATALOG.datasets if s not in WITH_FIXTURE)
  assert not missing, f"no tasks/fixtures/*.jsonl for: {missing}"


@pytest.mark.parametrize("spec", WITH_FIXTURE, ids=lambda s: s.label)
def test_dataset_prompts_render_fixture_rows_and_tasks_yield_tokenized_examples(
  spec, fixture_dir, demo_vocab
):
  settings.set_data_dir(fixture_dir)
  infos = _infos(spec)
  assert infos, f"{spec.label} registered no task"
  rendered_any = False
  for info in infos:  # every prompt, rendered in Python: cheap
    task = catalog.get_task_or_mixture(info.name)
    examples = list(task.source.examples(_split(info)))
    rendered_any = rendered_any or bool(examples)
    problems = {
      e: n for e, n in catalog.skip_counts().get(info.name, {}).items() if e.startswith(PROBLEMS)
    }
    assert not problems, f"{info.name}: {problems} on {spec.label}'s fixture rows"
  assert rendered_any
  # One training task and one score-eval twin through the whole seqio pipeline.
  for score_eval in (False, True):
    candidates = [i for i in infos if i.score_eval == score_eval]
    for info in candidates:
      task = catalog.get_task_or_mixture(info.name)
      ds = task.get_dataset({"inputs": 1024, "targets": 256}, split=_split(info), shuffle=False)
      examples = list(ds.take(2).as_numpy_iterator())
      if examples:
        for example in examples:
          _check_tokenized(example, score_eval)
        break
    else:
      assert not candidates, (
        f"no {'score-eval' if score_eval else 'training'} task of "
        f"{spec.label} yields an example from its fixture"
      )


@pytest.mark.parametrize("spec", WITH_TFDS, ids=lambda s: f"{s.label}-{s.source.tfds}")
def test_tfds_source_yields_examples_in_the_hf_schema_through_mock_data(spec, demo_vocab, tmp_path):
  settings.set_source("tfds")
  settings.set_tfds_data_dir(str(tmp_path))
  infos = [i for i in _infos(spec) if not i.score_eval]
  with tfds.testing.mock_data(num_examples=3):
    split = _split(infos[0])
    task = catalog.get_task_or_mixture(infos[0].name)
    reader = readers.open_split(spec.source, task.source.split_map[split])
    assert isinstance(reader, readers.TfdsReader)
    rows = list(reader.iterate())
    yielded = None
    for info in infos:  # every prompt over the same mock rows, in Python
      template = load_template(catalog.get_task_or_mixture(info.name).source.prompt)
      if list(render_examples(info.name, template, rows, score_eval=False)):
        yielded = yielded or info
      missing = [
        e for e in catalog.skip_counts().get(info.name, {}) if e.startswith("missing_field:")
      ]
      assert not missing, (
        f"{info.name}: TFDS {spec.source.tfds} lacks {missing} (after tfds_fields renaming)"
      )
    # Mock rows are random, so a prompt may not apply to any of them; one must.
    assert yielded, f"no prompt of {spec.label} applies to mock TFDS rows"
    task = catalog.get_task_or_mixture(yielded.name)
    ds = task.get_dataset({"inputs": 1024, "targets": 256}, split=_split(yielded), shuffle=False)
    _check_tokenized(next(ds.as_numpy_iterator()), False)

"""T5X's names in t0jax: one table (t0jax/cli/t5x_names.py) translates the ones t0jax accepts
and refuses the others with the t0jax spelling, on the command line and in gin files; the table
in docs/t5x.md is the one the code holds."""

from pathlib import Path

import gin
import pytest

import t0jax.train.trainer  # noqa: F401 - registers `train`
import t0jax.train.optim  # noqa: F401
from t0jax.cli import gin_flags, t5x_names

ROOT = Path(__file__).resolve().parent.parent
DEMO = "gin/experiments/demo.gin"

# A value for each t0jax target of an accepted row, and how to read it back after parsing.
VALUES = {
  "NUM_PARTITIONS": "2",
  "CHECKPOINT_PERIOD": "7",
  "KEEP_CHECKPOINTS": "5",
  "INITIAL_CHECKPOINT_PATH": "'/ckpt/checkpoint_1100000'",
  "NUM_MICROBATCHES": "2",
  "LEARNING_RATE": "0.01",
  "t0jax.optim.adafactor.decay_rate": "0.7",
  "TRAIN_STEPS": "1112200",
  "EVAL_PERIOD": "50",
  "EVAL_STEPS": "3",
  "RANDOM_SEED": "4",
  "LOG_PERIOD": "3",
  "MIXTURE_OR_TASK_NAME": "'demo_reviews_tone'",
  "TASK_FEATURE_LENGTHS": "{'inputs': 32, 'targets': 4}",
  "BATCH_SIZE": "16",
  "USE_CACHED_TASKS": "True",
  "train.pack": "False",
  "MIXTURE_OR_TASK_MODULE": "'json'",
  "T5Config.d_model": "64",
  "T5Config.num_heads": "2",
  "T5Config.head_dim": "16",
  "T5Config.d_ff": "96",
  "T5Config.num_layers": "3",
  "T5Config.num_decoder_layers": "1",
  "T5Config.vocab_size": "1024",
  "T5Config.dropout_rate": "0.1",
  "T5Config.tie_word_embeddings": "True",
  "T5Config.mlp_activations": "('relu',)",
  "ACTIVATION_DTYPE": "'bfloat16'",
  "T5Config.scan_layers": "True",
  "T5Config.remat_policy": "'full'",
  "Z_LOSS": "0.001",
  "LABEL_SMOOTHING": "0.1",
  "LOSS_NORMALIZING_FACTOR": "2.0",
  "EVAL_MAX_EXAMPLES": "5",
}


def _bound(name: str):
  if name.isupper():
    return gin.query_parameter(f"{name}/macro.value")
  return gin.query_parameter(name)


def _parse(flags, files=(DEMO,)):
  gin.clear_config()
  gin_flags.parse(list(files), list(flags), finalize=False)


ACCEPTED = [r for r in t5x_names.NAMES if r.action == t5x_names.ACCEPT]
REFUSED = [r for r in t5x_names.NAMES if r.action == t5x_names.REFUSE]


@pytest.mark.parametrize("row", ACCEPTED, ids=lambda r: r.t5x)
def test_each_accepted_t5x_binding_sets_the_t0jax_name(row):
  value = VALUES[row.t0jax]  # a new accepted row needs a value here
  _parse([f"{row.t5x}={value}"])
  assert _bound(row.t0jax) == gin.config.parse_value(value)


def test_t5x_none_microbatches_means_one():
  _parse(["trainer.Trainer.num_microbatches=None"])
  assert _bound("NUM_MICROBATCHES") == 1


def test_t5x_names_with_module_paths_and_scopes_are_recognised():
  _parse(
    [
      "t5x.partitioning.PjitPartitioner.num_partitions=4",
      "train_eval/utils.DatasetConfig.batch_size=32",
    ]
  )
  assert _bound("NUM_PARTITIONS") == 4 and _bound("BATCH_SIZE") == 32


@pytest.mark.parametrize("row", REFUSED, ids=lambda r: r.t5x)
def test_each_refused_t5x_binding_names_the_t0jax_way(row):
  with pytest.raises(gin_flags.GinConfigError) as e:
    _parse([f"{row.t5x}=1"])
  message = str(e.value)
  assert message.startswith(f"--gin.{row.t5x}: T5X's {row.t5x}")
  assert row.note in message and "\n" not in message
  if row.t0jax != "-":
    assert row.t0jax in message


@pytest.mark.parametrize("row", [r for r in t5x_names.NAMES if "." in r.t5x], ids=lambda r: r.t5x)
def test_a_t5x_configurable_in_a_gin_file_fails_naming_the_line_and_the_t0jax_spelling(
  row, tmp_path
):
  gin_file = tmp_path / "mine.gin"
  gin_file.write_text(f"include '{DEMO}'\n\n{row.t5x} = 1\n")
  with pytest.raises(gin_flags.GinConfigError) as e:
    _parse([], files=[str(gin_file)])
  message = str(e.value)
  assert message.startswith(f"{gin_file}:3: ")
  assert row.t5x in message or row.t5x.rsplit(".", 1)[0] in message
  if row.t0jax != "-" and (row.t5x.split("/")[0] == row.t5x):
    assert row.t0jax in message


@pytest.mark.parametrize(
  "row", [r for r in t5x_names.NAMES if "." not in r.t5x], ids=lambda r: r.t5x
)
def test_a_t5x_macro_set_in_a_gin_file_is_refused_or_translated_by_name(row, tmp_path):
  gin_file = tmp_path / "mine.gin"
  gin_file.write_text(f"include '{DEMO}'\n{row.t5x} = 1\n")
  with pytest.raises(gin_flags.GinConfigError, match=rf"^{gin_file}:2: T5X's {row.t5x}"):
    _parse([], files=[str(gin_file)])


def test_the_t0jax_names_are_not_t5x_names():
  """The other direction: no t0jax spelling is itself taken for a T5X name."""
  for row in t5x_names.NAMES:
    assert t5x_names.lookup(row.t0jax) is None or row.t0jax == "-"


def test_the_doc_prints_the_table_the_code_holds():
  doc = (ROOT / "docs" / "t5x.md").read_text()
  assert t5x_names.doc_table(doc) == t5x_names.markdown_table().splitlines()
  for row in t5x_names.NAMES:
    assert f"`{row.t5x}`" in doc

"""T5X's flags and run macros on t0jax's commands: each reaches what T5X's reaches, gin mistakes
end in one line naming the file and line (or the flag), every command shares the exit codes,
and nothing logs false errors when run outside the checkout."""

import os
import subprocess
import sys
from pathlib import Path

import gin
import pytest

import t0jax.catalog  # noqa: F401 - registers the demo tasks
import t0jax.cli.eval  # noqa: F401 - registers evaluate_checkpoint
import t0jax.cli.infer  # noqa: F401 - registers infer_checkpoint
import t0jax.train.trainer  # noqa: F401 - registers train
from t0jax import cli
from t0jax.cli import common, gin_flags

ROOT = Path(__file__).resolve().parent.parent
DEMO = "gin/experiments/demo.gin"


def _parse(files, flags):
  gin.clear_config()
  gin_flags.parse(files, flags, finalize=False)


def _train_args(flags):
  _parse([DEMO], flags)
  return gin.get_bindings("t0jax.train")


# --- each run macro reaches the parameter T5X's does ---------------------------------------------

TRAIN_MACROS = [
  ("MIXTURE_OR_TASK_NAME", "'demo_reviews_tone'", "mixture_or_task_name"),
  ("TASK_FEATURE_LENGTHS", "{'inputs': 32, 'targets': 4}", "task_feature_lengths"),
  ("TRAIN_STEPS", "1100010", "train_steps"),
  ("TRAIN_STEPS_RELATIVE", "12", "train_steps_relative"),
  ("BATCH_SIZE", "16", "batch_size"),
  ("INITIAL_CHECKPOINT_PATH", "'/ckpt/checkpoint_1100000'", "initial_checkpoint_path"),
  ("MODEL_DIR", "'/runs/x'", "model_dir"),
  ("USE_CACHED_TASKS", "True", "use_cached_tasks"),
  ("RANDOM_SEED", "7", "seed"),
  ("SEED", "8", "seed"),
  ("EVAL_PERIOD", "100", "eval_period"),
  ("EVAL_STEPS", "5", "eval_steps"),
  ("LABEL_SMOOTHING", "0.1", "label_smoothing"),
  ("LOSS_NORMALIZING_FACTOR", "1024.0", "loss_normalizing_factor"),
  ("Z_LOSS", "0.0", "z_loss"),
]


@pytest.mark.parametrize("macro,value,param", TRAIN_MACROS, ids=[m[0] for m in TRAIN_MACROS])
def test_each_train_macro_reaches_its_train_parameter(macro, value, param):
  args = _train_args([f"{macro}={value}"])
  assert args[param] == gin.config.parse_value(value)


def test_dropout_rate_reaches_the_model_config():
  args = _train_args(["DROPOUT_RATE=0.1"])
  assert args["model_config"].dropout_rate == 0.1


def test_random_seed_and_seed_are_one_setting_either_way():
  assert _train_args([])["seed"] == 0
  assert _train_args(["RANDOM_SEED=3"])["seed"] == 3
  assert _train_args(["SEED=5"])["seed"] == 5


@pytest.mark.parametrize(
  "gin_file,configurable",
  [("gin/runs/eval.gin", "evaluate_checkpoint"), ("gin/runs/infer.gin", "infer_checkpoint")],
)
def test_eval_and_infer_take_the_t5x_macros(gin_file, configurable):
  _parse(
    [gin_file],
    [
      "CHECKPOINT_PATH='/c'",
      "MIXTURE_OR_TASK_NAME=demo_reviews_tone",
      "TASK_FEATURE_LENGTHS={'inputs': 64}",
      "USE_CACHED_TASKS=True",
      ("EVAL_OUTPUT_DIR" if "eval" in gin_file else "INFER_OUTPUT_DIR") + "='/o'",
    ],
  )
  args = gin.get_bindings(f"t0jax.{configurable}")
  assert args["checkpoint_path"] == "/c" and args["output_dir"] == "/o"
  assert args["mixture_or_task_name"] == "demo_reviews_tone"
  assert args["task_feature_lengths"] == {"inputs": 64} and args["use_cached_tasks"] is True


def test_mixture_or_task_module_is_imported_and_passed_to_the_data_process(tmp_path, monkeypatch):
  (tmp_path / "t5x_flags_user_module.py").write_text("IMPORTED = True\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  _parse([DEMO], ["MIXTURE_OR_TASK_MODULE='t5x_flags_user_module'"])
  assert sys.modules["t5x_flags_user_module"].IMPORTED
  from t0jax.train.data_process import _gin_imported_modules

  assert "t5x_flags_user_module" in _gin_imported_modules()


def test_a_module_that_cannot_be_imported_is_named():
  with pytest.raises(
    gin_flags.GinConfigError,
    match=r"^--gin.MIXTURE_OR_TASK_MODULE: MIXTURE_OR_TASK_MODULE 'no_such_mod",
  ):
    _parse([DEMO], ["MIXTURE_OR_TASK_MODULE='no_such_module_xyz'"])


# --- gin flags -----------------------------------------------------------------------------------


def _run(argv, capsys):
  code = cli.main(argv)
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def test_gin_search_paths_find_files_and_their_includes(tmp_path):
  folder = tmp_path / "configs"
  folder.mkdir()
  (folder / "base.gin").write_text(f"include '{DEMO}'\nBATCH_SIZE = 24\n")
  (folder / "exp.gin").write_text("include 'base.gin'\nTRAIN_STEPS = 9\n")
  gin_flags.add_search_paths([str(folder)])
  try:
    _parse(["exp.gin"], [])
    assert gin.query_parameter("BATCH_SIZE/macro.value") == 24
    assert gin.query_parameter("TRAIN_STEPS/macro.value") == 9
  finally:
    gin_flags._extra_search_paths.clear()


def test_gin_bindings_and_gin_dot_flags_are_the_same_binding(tmp_path):
  parser = common.parser("train", "", gin=True)
  args = parser.parse_args(
    [
      "--gin_bindings",
      "TRAIN_STEPS = 11",
      "--gin_file",
      DEMO,
      "--gin_file",
      "gin/models/t5_1_1_tiny.gin",
    ]
  )
  flags = common._gin_flags(args, ["BATCH_SIZE=4"])
  assert [label for label, _ in flags] == ["--gin_bindings 'TRAIN_STEPS = 11'", "--gin.BATCH_SIZE"]
  ctx = common.Context("train", args, args.gin_file, flags)
  ctx.parse_gin(finalize=False)
  assert gin.query_parameter("TRAIN_STEPS/macro.value") == 11
  assert gin.query_parameter("BATCH_SIZE/macro.value") == 4


def test_data_flags_set_seqio_and_the_catalogue(monkeypatch):
  import seqio
  from t0jax.data import settings

  monkeypatch.setattr(seqio.utils, "_GLOBAL_CACHE_DIRECTORIES", [])
  parser = common.parser("tasks", "", data=True)
  args = parser.parse_args(
    [
      "--tfds_data_dir",
      "/tfds",
      "--seqio_additional_cache_dirs",
      "/c1,/c2",
      "--seqio_additional_cache_dirs",
      "/c3",
    ]
  )
  try:
    common._apply_data_flags(args)
    assert settings.tfds_data_dir() == "/tfds"
    assert seqio.utils._TFDS_DATA_DIR_OVERRIDE == "/tfds"
    assert seqio.get_global_cache_dirs() == ["/c1", "/c2", "/c3"]
  finally:
    settings.set_tfds_data_dir(None)
    seqio.set_tfds_data_dir_override(None)


# --- gin mistakes: one line, file and line (or flag), exit 2 -------------------------------------


def _gin(tmp_path, text, name="mine.gin"):
  path = tmp_path / name
  path.write_text(f"include '{DEMO}'\n{text}")
  return str(path)


@pytest.mark.parametrize(
  "text,expected",
  [
    ("TRAIN_STEPS = (\n", ":2: gin syntax error"),
    ("TRAIN_STEPS = 3 4\n", ":2: gin syntax error"),
    ("trian.batch_size = 4\n", ":2: Unknown gin configurable 'trian'. Closest: train"),
    ("train.batch_sise = 4\n", ":2: Unknown gin parameter train.batch_sise. Closest: batch_size"),
    (
      "partitioning.PjitPartitioner.num_partitions = 2\n",
      ":2: Unknown gin configurable "
      "'partitioning.PjitPartitioner': T5X's partitioning.PjitPartitioner.num_partitions is "
      "t0jax's NUM_PARTITIONS",
    ),
    (
      "TRAIN_STEP = 5\n",
      ":2: the macro TRAIN_STEP is set but no gin file reads it. Closest: TRAIN_STEPS",
    ),
    ("train.batch_size = %NOPE\n", ":2: the macro NOPE is read (%NOPE) but never set"),
    ("BATCH_SIZE = 0\n", ":2: BATCH_SIZE = 0 must be >= 1."),
    ("CHECKPOINT_PERIOD = -1\n", ":2: CHECKPOINT_PERIOD = -1 must be >= 1."),
    ("EVAL_PERIOD = -3\n", ":2: EVAL_PERIOD = -3 must be >= 0."),
    ("TRAIN_STEPS = 'many'\n", ":2: TRAIN_STEPS = 'many' must be an integer >= 1 or None."),
    ("DROPOUT_RATE = 1.5\n", ":2: DROPOUT_RATE = 1.5 must be in [0, 1)."),
    ("include 'gin/nope.gin'\n", ":2: gin file 'gin/nope.gin' not found"),
    ("TASK_FEATURE_LENGTHS = [512, 8]\n", ":2: TASK_FEATURE_LENGTHS = [512, 8] must be a dict"),
    (
      "TASK_FEATURE_LENGTHS = {'inputs': 0, 'targets': 8}\n",
      ":2: TASK_FEATURE_LENGTHS = "
      "{'inputs': 0, 'targets': 8} must give positive integer lengths (inputs).",
    ),
  ],
)
def test_gin_file_mistakes_name_the_file_and_line_in_one_line(tmp_path, capsys, text, expected):
  path = _gin(tmp_path, text)
  code, out, err = _run(["train", f"--gin_file={path}", f"--model_dir={tmp_path / 'run'}"], capsys)
  assert code == 2
  assert err.count("\n") == 1 and err.startswith(f"t0jax train: {path}{expected}"), err
  assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
  "flag,expected",
  [
    ("--gin.TRAIN_STEPS=-5", "--gin.TRAIN_STEPS: TRAIN_STEPS = -5 must be >= 1."),
    ("--gin.BATCH_SIZE='x'", "--gin.BATCH_SIZE: BATCH_SIZE = 'x' must be an integer >= 1."),
    ("--gin.RANDOM_SEED=None", "--gin.RANDOM_SEED: RANDOM_SEED = None must be an integer"),
    ("--gin.LOSS_NORMALIZING_FACTOR='AVERAGE'", "--gin.LOSS_NORMALIZING_FACTOR: "),
    (
      "--gin.TRAIN_STPES=4",
      "--gin.TRAIN_STPES: no gin file reads the macro TRAIN_STPES. Closest: TRAIN_STEPS",
    ),
    (
      "--gin.network.T5Config.float32_attention_logits=True",
      "--gin.network.T5Config.float32_attention_logits: T5X's",
    ),
    (
      "--gin_bindings=T5Config.emb_dim = 3",
      "--gin_bindings 'T5Config.emb_dim = 3': T5Config "
      "has no field 'emb_dim': T5X's network.T5Config.emb_dim is t0jax's T5Config.d_model",
    ),
  ],
)
def test_flag_mistakes_name_the_flag_in_one_line_and_train_nothing(
  tmp_path, capsys, flag, expected
):
  code, out, err = _run(
    ["train", f"--gin_file={DEMO}", f"--model_dir={tmp_path / 'run'}", flag], capsys
  )
  assert code == 2
  assert err.count("\n") == 1 and err.startswith(f"t0jax train: {expected}"), err
  assert not (tmp_path / "run" / "checkpoints").exists()


# --- one exit-code convention for every command --------------------------------------------------


@pytest.mark.parametrize(
  "argv",
  [
    ["train", "--model_dir", "/tmp/x"],
    [
      "eval",
      "--checkpoint",
      "/no/such/checkpoint",
      "--mixture",
      "demo_heldout_score_eval",
      "--output_dir",
      "/tmp/x",
    ],
    ["infer", "--mixture_or_task", "demo_reviews_tone", "--output_dir", "/tmp/x"],
    ["plan", f"--gin_file={DEMO}", "--topology", "v9-3"],
    ["prompts", "/no/such/templates.yaml", "--example", "-"],
    ["tasks", "demo_trian"],
    ["predict", "--checkpoint", "/no/such/checkpoint", "--input", "hi"],
  ],
  ids=lambda a: a[0],
)
def test_every_command_reports_bad_input_in_one_line_with_exit_2(argv, capsys):
  code, out, err = _run(argv, capsys)
  assert code == 2
  assert err.count("\n") == 1 and err.startswith(f"t0jax {argv[0]}: "), err


def test_plan_exits_1_when_the_run_does_not_fit(capsys):
  code, out, err = _run(
    ["plan", "--gin_file=gin/experiments/t0_11b.gin", "--topology", "v3-8"], capsys
  )
  assert code == 1 and err == "" and out


# --- outside the checkout ------------------------------------------------------------------------


def test_commands_run_from_another_folder_log_no_false_errors(tmp_path):
  t0jax = Path(sys.executable).parent / "t0jax"
  env = {**os.environ, "PYTHONPATH": ""}
  proc = subprocess.run(
    [str(t0jax), "plan", f"--gin_file={DEMO}", "--topology", "v4-8"],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr
  assert "ERROR" not in proc.stderr and "Path not found" not in proc.stderr, proc.stderr


def test_a_command_after_another_in_the_same_process_owns_gin_again(tmp_path, capsys):
  """A test or notebook runs commands one after another: the first locks gin's configuration."""
  gin.clear_config()
  gin.finalize()
  code, out, err = _run(
    ["train", f"--gin_file={DEMO}", f"--model_dir={tmp_path}", "--gin.TRAIN_STEPS=-1"], capsys
  )
  assert code == 2 and err == "t0jax train: --gin.TRAIN_STEPS: TRAIN_STEPS = -1 must be >= 1.\n"

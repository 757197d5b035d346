"""The built wheel works outside the checkout: the catalogue, its prompts and fixtures, the demo
vocabulary and every gin file are inside, and gin names (`gin/experiments/demo.gin` and the
files' own `include 'gin/...'` lines) resolve against the installed package."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """The wheel built from a copy of this checkout (the build writes build/ and *.egg-info next
  to setup.py), installed without dependencies into a folder."""
  base = tmp_path_factory.mktemp("wheel")
  source = base / "src"
  top_level = {".git", ".venv", "build", "dist", "runs", "out", ".pytest_cache", ".cache"}
  shutil.copytree(
    ROOT,
    source,
    ignore=lambda folder, names: [
      n
      for n in names
      if n == "__pycache__"
      or n.endswith(".egg-info")
      or (os.path.samefile(folder, ROOT) and n in top_level)
    ],
  )
  build = subprocess.run(
    [
      sys.executable,
      "-m",
      "pip",
      "wheel",
      str(source),
      "--no-deps",
      "--no-build-isolation",
      "-q",
      "-w",
      str(base / "dist"),
    ],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert build.returncode == 0, f"the wheel does not build:\n{build.stderr[-3000:]}"
  wheel = glob.glob(str(base / "dist" / "t0jax-*.whl"))[0]
  target = base / "site"
  subprocess.run(
    [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), wheel],
    check=True,
    capture_output=True,
    timeout=600,
  )
  return wheel, target


def _tracked(folder, suffixes):
  out = []
  for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
    out += [
      os.path.relpath(os.path.join(dirpath, f), os.path.join(ROOT, folder))
      for f in files
      if f.endswith(suffixes)
    ]
  return sorted(out)


def test_the_wheel_holds_every_gin_file_and_catalogue_data_file(installed):
  wheel, _ = installed
  names = set(zipfile.ZipFile(wheel).namelist())
  for rel in _tracked("gin", (".gin",)):
    assert f"t0jax/gin/{rel}" in names, rel
  for rel in _tracked("tasks", (".yaml", ".model", ".json", ".jsonl", ".py")):
    assert f"t0jax/catalog/{rel}" in names, rel
  assert not any(n.startswith("t0jax/gin/") and n.endswith(".py") for n in names)


def test_an_installed_t0jax_resolves_gin_files_and_includes_outside_a_checkout(installed, tmp_path):
  _, target = installed
  code = (
    "import gin, t0jax\n"
    "from t0jax.cli import gin_flags as gin_utils\n"
    "from t0jax.train import trainer\n"
    "import t0jax.catalog\n"
    "assert t0jax.__file__.startswith(%r), t0jax.__file__\n"
    "gin_utils.parse(['gin/experiments/demo.gin'], ['TRAIN_STEPS=7'], finalize=False)\n"
    "print(gin.query_parameter('%%TRAIN_STEPS'), gin.query_parameter('T5Config.vocab_size'),"
    " gin.query_parameter('T5Config.size'))\n"
    "print(len(t0jax.catalog.all_task_infos()))\n" % str(target)
  )
  env = {**os.environ, "PYTHONPATH": str(target)}
  result = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    cwd=str(tmp_path),
    env=env,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  steps, vocab, size, tasks = result.stdout.split()
  assert (int(steps), int(vocab)) == (7, 896)  # the flag, and demo.gin's own binding
  assert size == "tiny"  # from gin/models/t5_1_1_tiny.gin, reached by the include
  assert int(tasks) > 400

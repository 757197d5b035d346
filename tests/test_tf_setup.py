"""TensorFlow is imported quietly (its C++ start-up lines go to /dev/null) with GPUs hidden,
and only that window of stderr is silenced."""

import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, **env):
  full = {
    k: v
    for k, v in os.environ.items()
    if k not in ("TF_CPP_MIN_LOG_LEVEL", "T0JAX_TF_STARTUP_LOGS")
  }
  full.update(env)
  return subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=ROOT, timeout=300
  )


def test_the_silenced_window_drops_native_writes_and_nothing_after_it():
  code = (
    "import os, sys\n"
    "from t0jax.data.tf_setup import _stderr_silenced\n"
    "with _stderr_silenced():\n"
    "  os.write(2, b'native-inside\\n'); print('python-inside', file=sys.stderr)\n"
    "os.write(2, b'native-after\\n'); print('python-after', file=sys.stderr)\n"
  )
  err = _run(code).stderr
  assert "inside" not in err
  assert "native-after" in err and "python-after" in err
  shown = _run(code, T0JAX_TF_STARTUP_LOGS="1").stderr
  assert "native-inside" in shown and "python-inside" in shown


def test_an_error_raised_inside_the_window_is_still_reported():
  code = (
    "from t0jax.data.tf_setup import _stderr_silenced\n"
    "with _stderr_silenced():\n"
    "  raise ImportError('tensorflow is broken here')\n"
  )
  result = _run(code)
  assert result.returncode != 0
  assert "ImportError: tensorflow is broken here" in result.stderr


def test_importing_the_catalogue_prints_no_tensorflow_start_up_lines():
  result = _run(
    "import t0jax.catalog, tensorflow as tf\nprint(tf.config.get_visible_devices('GPU'))"
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "[]"  # no GPU for TensorFlow, whatever the machine has
  native = [
    line
    for line in result.stderr.splitlines()
    if line[:1] in "IWEF" and line[1:5].isdigit() or "absl::InitializeLog" in line
  ]
  assert native == [], result.stderr

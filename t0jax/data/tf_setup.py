"""TensorFlow, imported once the way t0jax needs it: quiet, and without accelerators.

TensorFlow only runs the input pipelines (SeqIO, TFDS); JAX owns the accelerators. Importing it
prints C++ start-up lines (oneDNN notices, "Could not find cuda drivers", a failed cuInit) before
absl logging is configured, so TF_CPP_MIN_LOG_LEVEL cannot hide them: they are written to the
process's stderr while TensorFlow loads, and this module sends exactly that window to /dev/null.
Set T0JAX_TF_STARTUP_LOGS=1 to see them (e.g. when TensorFlow itself fails to load).
"""

import contextlib
import io
import os
import sys

_tf = None


@contextlib.contextmanager
def _stderr_silenced():
  """Points file descriptor 2 at /dev/null for the block (C++ writes bypass sys.stderr)."""
  if os.environ.get("T0JAX_TF_STARTUP_LOGS", "") not in ("", "0"):
    yield
    return
  try:
    fd = sys.__stderr__.fileno()
  except (AttributeError, ValueError, io.UnsupportedOperation):
    yield
    return
  sys.stderr.flush()
  saved = os.dup(fd)
  try:
    with open(os.devnull, "w") as null:
      os.dup2(null.fileno(), fd)
    yield
  finally:
    try:
      sys.stderr.flush()
    except ValueError:
      pass
    os.dup2(saved, fd)
    os.close(saved)


def import_tensorflow():
  """Returns the `tensorflow` module, imported quietly with every GPU hidden from it.

  Call before anything imports seqio or tensorflow_datasets (they import TensorFlow)."""
  global _tf
  if _tf is not None:
    return _tf
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # oneDNN's custom ops only matter for TF's float kernels, which the pipelines do not use; with
  # them on, TF logs a notice at start-up and an error about int64 support on every run.
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  with _stderr_silenced():
    import tensorflow as tf

    try:  # TensorFlow must never take accelerator memory from JAX.
      tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # the host program already initialised TF's devices
      pass
  _tf = tf
  return tf

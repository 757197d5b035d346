"""The training data made by a child process (t0jax/train/data_process.py) is exactly the in-process
data, errors cross the process boundary with their class and message, a mixture the child cannot
see falls back to in-process reading, and the child never outlives its parent."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import t0jax.catalog  # noqa: F401 - registers demo_train
from t0jax.train.data_process import ProcessBatches, UnregisteredMixture
from t0jax.train.input_pipeline import DataShareError, TrainData

LENGTHS = {"inputs": 128, "targets": 16}


def _take(iterator, n):
  try:
    return [next(iterator) for _ in range(n)]
  finally:
    iterator.close()


@pytest.mark.parametrize("start, slice_index, num_slices", [(0, 0, 1), (3, 1, 2)])
def test_the_child_makes_exactly_the_in_process_batches(start, slice_index, num_slices):
  data = TrainData("demo_train", LENGTHS, 4, num_virtual_shards=2)
  expected = _take(data.host_batches(start, slice_index, num_slices), 4)
  got = _take(ProcessBatches(data, start, slice_index, num_slices), 4)
  for a, b in zip(expected, got):
    assert sorted(a) == sorted(b)
    for k in a:
      assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_an_error_in_the_child_reaches_the_parent_with_its_class_and_message(tmp_path):
  import seqio
  import tensorflow as tf
  from t0jax import catalog

  # A task the child can import (this file's folder is on its path) with too few examples for
  # its shards: the child raises DataShareError, the parent re-raises it.
  module = tmp_path / "t0jax_test_tiny_task.py"
  module.write_text(
    textwrap.dedent('''
      import seqio, tensorflow as tf
      import t0jax.catalog as catalog
      def _fn(split, shuffle_files, seed=None):
          return tf.data.Dataset.from_tensors({"inputs": "one", "targets": "two"})
      seqio.TaskRegistry.add(
          "t0jax_test_tiny_task", seqio.FunctionDataSource(_fn, splits=["train"]),
          output_features={k: seqio.Feature(catalog.DEMO_VOCABULARY) for k in ("inputs", "targets")},
          preprocessors=[seqio.preprocessors.tokenize])
  ''')
  )
  sys.path.insert(0, str(tmp_path))
  try:
    import gin
    import t0jax_test_tiny_task  # noqa: F401 - registered here too

    gin.parse_config("import t0jax_test_tiny_task")  # the child imports what gin imports
    data = TrainData("t0jax_test_tiny_task", LENGTHS, 4, num_virtual_shards=4)
    with pytest.raises(DataShareError, match="yielded no examples"):
      _take(ProcessBatches(data), 1)
  finally:
    sys.path.remove(str(tmp_path))
    gin.clear_config(clear_constants=True)
    seqio.TaskRegistry.remove("t0jax_test_tiny_task")
    del tf, catalog


def test_a_mixture_registered_only_in_this_process_is_named_and_read_in_process(tmp_path):
  import seqio
  import tensorflow as tf
  from t0jax import catalog
  from t0jax.train import trainer

  def fn(split, shuffle_files, seed=None):
    return tf.data.Dataset.from_tensors({"inputs": "a b c", "targets": "d"}).repeat(40)

  name = "t0jax_test_parent_only_task"
  seqio.TaskRegistry.add(
    name,
    seqio.FunctionDataSource(fn, splits=["train"]),
    output_features={k: seqio.Feature(catalog.DEMO_VOCABULARY) for k in ("inputs", "targets")},
    preprocessors=[seqio.preprocessors.tokenize],
  )
  try:
    data = TrainData(name, LENGTHS, 2, num_virtual_shards=1)
    with pytest.raises(UnregisteredMixture, match=name):
      _take(ProcessBatches(data), 1)
    # The trainer's reader falls back to in-process reading and gets the same batches.
    from jax.sharding import NamedSharding, PartitionSpec as P
    import jax

    mesh = jax.make_mesh((1, 1), ("data", "model"), devices=jax.devices()[:1])
    batches = trainer._host_batches(data, 0, NamedSharding(mesh, P("data")), 2)
    assert not isinstance(batches.source, ProcessBatches)
    got = _take(batches, 2)
    expected = _take(data.host_batches(0), 2)
    for a, b in zip(expected, got):
      np.testing.assert_array_equal(a["encoder_input_tokens"], b["encoder_input_tokens"])
  finally:
    seqio.TaskRegistry.remove(name)


def test_the_child_exits_when_its_parent_is_killed():
  script = textwrap.dedent('''
      import sys, time
      import t0jax.catalog
      from t0jax.train.data_process import ProcessBatches
      from t0jax.train.input_pipeline import TrainData
      it = ProcessBatches(TrainData("demo_train", {"inputs": 128, "targets": 16}, 4,
                                    num_virtual_shards=2))
      next(it)
      print(it._proc.pid, flush=True)
      time.sleep(600)
  ''')
  parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
  try:
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 60
    while time.time() < deadline and _alive(child):
      time.sleep(0.2)
    assert not _alive(child), "the data process outlived its killed parent"
  finally:
    if parent.poll() is None:
      parent.kill()


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
  except FileNotFoundError:
    return False


def test_close_stops_the_child():
  it = ProcessBatches(TrainData("demo_train", LENGTHS, 4, num_virtual_shards=2))
  next(it)
  it.close()
  assert it._proc.poll() is not None
  with pytest.raises(StopIteration):
    next(it)

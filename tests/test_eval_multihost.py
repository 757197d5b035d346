"""Two real JAX processes (2 CPU devices each) evaluate a mixture (a rank-classification task and a
generative one) on a 4-device mesh: each data slice scores and decodes its shard, results are
gathered, and they equal a single process's results.

Meshes: 4 x 1 (two data slices, one per process, with different amounts of work) and 1 x 4 (the
model axis spans both processes: both score the same slice and send the same records, which
must be counted once). This file is also the worker: `python test_eval_multihost.py --worker`.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

TASK = "test_eval_multihost_colours"
GENERATIVE = "test_eval_multihost_echo"
MIXTURE = "test_eval_multihost_mix"
COLOURS = ["red", "green", "blue", "yellow", "purple"]


def rows():
  """Inputs of 20 to 30 tokens (one length bucket: few programs to compile) and 1 to 5
  choices, so the two shards plan different steps."""
  out = []
  for i in range(11):
    filler = " and then it rained" * (1 + i % 2)
    choices = COLOURS[: 1 + i % 5]
    out.append(
      {
        "inputs": f"Story {i}: the door was {COLOURS[i % 5]}{filler}. Its colour?",
        "targets": COLOURS[i % 5],
        "answer_choices": choices,
      }
    )
  return out


def register_tasks():
  """A rank-classification task, a generative one, and a mixture of both."""
  import seqio
  import tensorflow as tf
  import t0jax.catalog as catalog

  features = {
    "inputs": seqio.Feature(catalog.DEMO_VOCABULARY, add_eos=False),
    "targets": seqio.Feature(catalog.DEMO_VOCABULARY, add_eos=True),
  }
  for name, keys in (
    (TASK, ("inputs", "targets", "answer_choices")),
    (GENERATIVE, ("inputs", "targets")),
  ):
    signature = {k: tf.TensorSpec([None] if k == "answer_choices" else [], tf.string) for k in keys}

    def dataset_fn(split, shuffle_files, seed=None, signature=signature):
      del split, shuffle_files, seed
      examples = [{k: r[k] for k in signature} for r in rows()]
      return tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)

    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
      name,
      seqio.FunctionDataSource(dataset_fn, splits=["validation"]),
      output_features=features,
      preprocessors=[seqio.preprocessors.tokenize],
    )
  seqio.MixtureRegistry.remove(MIXTURE)
  seqio.MixtureRegistry.add(MIXTURE, [TASK, GENERATIVE], default_rate=1.0)


def model_and_params():
  import jax
  from t0jax.model import T5Config, Transformer, init_params

  cfg = T5Config(
    vocab_size=896,
    d_model=32,
    num_heads=4,
    head_dim=8,
    d_ff=48,
    num_layers=1,
    num_decoder_layers=1,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
  )
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  params = jax.tree.map(lambda s: rng.normal(0, 0.4, s.shape).astype(np.float32), shapes)
  return cfg, Transformer(cfg), params


def evaluate_task(partitioner=None):
  from t0jax.evaluate import evaluate

  cfg, model, params = model_and_params()
  if partitioner is not None:
    import jax
    from t0jax.model import logical_axes

    shardings = partitioner.shardings(logical_axes(cfg))
    params = jax.tree.map(
      lambda x, s: jax.make_array_from_callback(x.shape, s, lambda index: x[index]),
      params,
      shardings,
    )
  return evaluate(
    model,
    params,
    cfg,
    MIXTURE,
    batch_size=2,
    per_example=True,
    partitioner=partitioner,
    buckets_per_octave=1,
    max_decode_length=4,
  )


def worker(process_id: int, port: int, out_dir: str) -> None:
  import jax

  jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
  register_tasks()
  from t0jax.parallel.partitioning import Partitioner

  for num_partitions in (1, 4):
    results = evaluate_task(Partitioner(num_partitions))
    if process_id == 0:
      with open(os.path.join(out_dir, f"mesh_{num_partitions}.json"), "w") as f:
        json.dump(results, f)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_hosts_scoring_their_shards_on_a_shared_mesh_equal_one_process(tmp_path):
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "CUDA_VISIBLE_DEVICES": "",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    "TF_CPP_MIN_LOG_LEVEL": "3",
  }
  port = _free_port()
  procs = [
    subprocess.Popen(
      [sys.executable, __file__, "--worker", str(i), str(port), str(tmp_path)],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in (0, 1)
  ]
  try:
    outputs = [p.communicate(timeout=240)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, text in zip(procs, outputs):
    assert p.returncode == 0, text[-3000:]
  register_tasks()
  single = evaluate_task()
  for num_partitions in (1, 4):
    gathered = json.loads((tmp_path / f"mesh_{num_partitions}.json").read_text())
    assert gathered["settings"]["num_data_slices"] == (2 if num_partitions == 1 else 1)
    ours, theirs = gathered["examples"][TASK], single["examples"][TASK]
    assert [e["idx"] for e in ours] == [e["idx"] for e in theirs] == list(range(11))
    for a, b in zip(ours, theirs):
      np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4, rtol=0)
    metrics = gathered["prompts"][TASK]["metrics"]
    assert metrics == pytest.approx(single["prompts"][TASK]["metrics"])
    generated = [e["prediction_text"] for e in gathered["examples"][GENERATIVE]]
    assert generated == [e["prediction_text"] for e in single["examples"][GENERATIVE]]


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])

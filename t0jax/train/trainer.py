"""The training loop (gin-configurable `train`), used by `t0jax train` (t0jax/cli/train.py).

Reads top to bottom: build the mesh and the optimizer, restore or initialise the state, compile
one step with input/output shardings and donated state, then loop: batch, step, log, checkpoint.
"""
import contextlib
import dataclasses
import logging
import os
import signal
import time
from typing import Callable, Mapping, Optional

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from t0jax.parallel import distributed
from t0jax.train import flops, optim
from t0jax.checkpoints.orbax import (Checkpointer, abstract_with_shardings, is_checkpoint_dir,
                                 load_params, model_signature)
from t0jax.train.data_process import ProcessBatches, UnregisteredMixture
from t0jax.train.input_pipeline import TrainData, check_truncation, get_mixture_or_task
from t0jax.model.losses import cross_entropy_with_z_loss
from t0jax.train.writer import MetricsWriter
from t0jax.model import T5Config, Transformer, init_params, logical_axes, scan_params
from t0jax.parallel.partitioning import Partitioner

log = logging.getLogger("t0jax.train.trainer")


class NonFiniteLossError(RuntimeError):
  pass


class _Preemption:
  """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the next step boundary and exits.

  With several processes every host must save the same step, so SIGTERM is left to JAX's
  preemption service (installed by `jax.distributed.initialize`), which picks a step all hosts
  reach; `stop_at(step)` asks it. SIGINT keeps its default there (an interrupt, no checkpoint).
  """

  def __init__(self):
    self.signal = None
    self._old = {}
    self._multihost = jax.process_count() > 1

  def __enter__(self):
    for sig in (() if self._multihost else (signal.SIGTERM, signal.SIGINT)):
      self._old[sig] = signal.signal(sig, self._handle)
    return self

  def stop_at(self, step: int) -> bool:
    if self._multihost:
      from jax.experimental import multihost_utils
      if multihost_utils.reached_preemption_sync_point(step):
        self.signal = "SIGTERM"
    return self.signal is not None

  def _handle(self, signum, frame):
    del frame
    self.signal = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _check_writable(model_dir: str) -> None:
  try:
    os.makedirs(model_dir, exist_ok=True)
    probe = os.path.join(model_dir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise PermissionError(f"--model_dir {model_dir!r} is not writable ({e.strerror}); choose a "
                          "directory you can write to. Nothing was trained.") from e


def make_train_step(cfg: T5Config, tx: optax.GradientTransformation, schedule: Callable,
                    num_microbatches: int, z_loss: float, loss_normalizing_factor, seed: int):
  model = Transformer(cfg)
  base_rng = jax.random.key(seed)

  def loss_sums(params, batch, rng):
    logits = model.apply({"params": params}, batch["encoder_input_tokens"],
                         batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                         batch.get("encoder_segment_ids"), batch.get("decoder_segment_ids"),
                         enable_dropout=cfg.dropout_rate > 0, rngs={"dropout": rng})
    targets = batch["decoder_target_tokens"]
    weights = batch.get("decoder_loss_weights", targets > 0).astype(jnp.float32)
    loss, zl = cross_entropy_with_z_loss(logits, targets, weights, z_loss)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32) * weights
    aux = {"loss_sum": loss.sum(), "z_loss_sum": zl.sum(), "correct": correct.sum(),
           "weight": weights.sum()}
    return loss.sum(), aux

  grad_fn = jax.value_and_grad(loss_sums, has_aux=True)

  def step(state, batch):
    rng = jax.random.fold_in(base_rng, state["step"])
    params = state["params"]
    if num_microbatches == 1:
      (_, aux), grads = grad_fn(params, batch, rng)
    else:
      micro = jax.tree.map(
          lambda x: x.reshape((num_microbatches, -1) + x.shape[1:]), batch)

      def body(carry, inputs):
        i, mb = inputs
        (_, aux), g = grad_fn(params, mb, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (g, aux)), None

      zeros = (jax.tree.map(jnp.zeros_like, params),
               {k: jnp.float32(0) for k in ("loss_sum", "z_loss_sum", "correct", "weight")})
      (grads, aux), _ = jax.lax.scan(body, zeros, (jnp.arange(num_microbatches), micro))
    if loss_normalizing_factor == "NUM_REAL_TARGET_TOKENS":
      norm = jnp.maximum(aux["weight"], 1.0)
    elif loss_normalizing_factor is None:
      norm = jnp.float32(1.0)
    else:
      norm = jnp.float32(loss_normalizing_factor)
    grads = jax.tree.map(lambda g: g / norm, grads)
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    update_norm = optax.tree.norm(updates)
    new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates),
                 "opt_state": opt_state}
    tokens = jnp.maximum(aux["weight"], 1.0)
    metrics = {"loss": aux["loss_sum"] / tokens, "z_loss": aux["z_loss_sum"] / tokens,
               "accuracy": aux["correct"] / tokens, "target_tokens": aux["weight"],
               "input_tokens": jnp.sum(batch["encoder_input_tokens"] > 0).astype(jnp.float32),
               "grad_norm": optax.tree.norm(grads), "update_norm": update_norm,
               "learning_rate": schedule(state["step"])}
    return new_state, metrics

  return step


def _load_initial_params(path: str, cfg: T5Config, shardings, abstract_params):
  """Parameters from a Hugging Face checkpoint directory or a t0jax checkpoint."""
  if os.path.isfile(os.path.join(path, "config.json")):
    from t0jax.checkpoints.hf import load_hf_checkpoint
    hf_cfg, params = load_hf_checkpoint(path)
    ours, theirs = model_signature(cfg), model_signature(hf_cfg)
    diff = {k: (theirs[k], ours[k]) for k in ours if ours[k] != theirs.get(k)}
    if diff:
      raise ValueError(f"INITIAL_CHECKPOINT_PATH {path} holds another model shape than the gin "
                       f"config: " + "; ".join(f"{k}: checkpoint {a!r}, gin {b!r}"
                                               for k, (a, b) in diff.items()))
    if cfg.scan_layers:
      params = scan_params(params, cfg)
    return jax.tree.map(lambda x, s: jax.device_put(np.asarray(x, np.float32), s), params,
                        shardings)
  if is_checkpoint_dir(path):
    saved_cfg, params = load_params(path, shardings)
    diff = {k: (v, model_signature(cfg)[k]) for k, v in model_signature(saved_cfg).items()
            if model_signature(cfg).get(k) != v}
    if diff:
      raise ValueError(f"INITIAL_CHECKPOINT_PATH {path} holds another model shape than the gin "
                       "config: " + "; ".join(f"{k}: checkpoint {a!r}, gin {b!r}"
                                              for k, (a, b) in diff.items()))
    return params
  raise FileNotFoundError(f"INITIAL_CHECKPOINT_PATH {path!r} is neither a Hugging Face checkpoint "
                          "directory (config.json + safetensors) nor a t0jax checkpoint.")


def _keep_vocabulary(name: str, model_dir: str) -> None:
  """Copy the mixture's sentencepiece model to MODEL_DIR/spiece.model, where `t0jax predict`
  and `t0jax eval` look for a checkpoint's vocabulary."""
  vocab = get_mixture_or_task(name).output_features["targets"].vocabulary
  src = getattr(vocab, "sentencepiece_model_file", None)
  dst = os.path.join(model_dir, "spiece.model")
  if src and not os.path.exists(dst):
    import tensorflow as tf
    with tf.io.gfile.GFile(src, "rb") as f:
      data = f.read()
    with open(dst + ".tmp", "wb") as f:
      f.write(data)
    os.replace(dst + ".tmp", dst)


@gin.configurable(module="t0jax")
def train(*, model_dir: str = gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
          task_feature_lengths: Mapping[str, int] = gin.REQUIRED, train_steps: int = gin.REQUIRED,
          batch_size: int = gin.REQUIRED, model_config: T5Config = gin.REQUIRED,
          optimizer: Callable = optim.adafactor,
          learning_rate_schedule: Optional[Callable] = None,
          initial_checkpoint_path: Optional[str] = None, checkpoint_period: int = 1000,
          keep_checkpoints: Optional[int] = 3, log_period: int = 100, eval_period: int = 0,
          eval_mixture_or_task_name: Optional[str] = None, eval_batches: int = 4,
          eval_max_examples: Optional[int] = None,
          num_microbatches: int = 1, num_partitions: int = 1, axis_rules="standard",
          z_loss: float = 1e-4, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS", seed: int = 0,
          pack: bool = True, num_virtual_shards: int = 8, async_checkpointing: bool = True,
          tensorboard: bool = True, progress_bar: bool = True,
          truncation_check_examples: int = 200, num_devices: Optional[int] = None,
          data_process: bool = True) -> dict:
  """Train to `train_steps` (resuming from the latest checkpoint in `model_dir` if any)."""
  _check_writable(model_dir)
  distributed.check_shared_directory(model_dir)
  primary = distributed.is_primary()
  cfg = model_config
  if num_devices and jax.process_count() > 1:
    raise ValueError(f"train.num_devices={num_devices} picks devices of one host; it cannot be "
                     f"used with {jax.process_count()} processes. Remove it.")
  devices = jax.devices()[:num_devices] if num_devices else None
  part = Partitioner(num_partitions, axis_rules, devices=devices)
  if batch_size % (part.data_parallel_size * num_microbatches):
    raise ValueError(f"BATCH_SIZE={batch_size} must be divisible by data-parallel size "
                     f"{part.data_parallel_size} x num_microbatches {num_microbatches}.")
  schedule = learning_rate_schedule or optim.constant_schedule()
  tx = optimizer(learning_rate=schedule)

  param_shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  param_sh = part.shardings(logical_axes(cfg))
  opt_shapes = jax.eval_shape(tx.init, param_shapes)
  state_shapes = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": param_shapes,
                  "opt_state": opt_shapes}
  state_sh = {"step": part.replicated, "params": param_sh,
              "opt_state": optim.state_shardings(opt_shapes, param_shapes, param_sh)}
  data = TrainData(mixture_or_task_name, dict(task_feature_lengths), batch_size, seed=seed,
                   pack=pack, num_virtual_shards=num_virtual_shards)
  run_config = {"model": model_signature(cfg), "data": data.state(0),
                "model_full": {**dataclasses.asdict(cfg),
                               "mlp_activations": list(cfg.mlp_activations)}}

  if primary:
    _keep_vocabulary(mixture_or_task_name, model_dir)
  ckpt = Checkpointer(os.path.join(model_dir, "checkpoints"), keep_checkpoints,
                      async_checkpointing)
  latest = ckpt.latest_step()
  # Every host reads its first batch before the costly part (restore or init, compilation), so
  # a host without its share of the data stops all hosts at once.
  # The truncation check samples the mixture once, on a fresh start, on process 0 (in the data
  # process when there is one).
  truncation_check = truncation_check_examples if primary and latest is None else 0
  batches = _host_batches(data, latest or 0, part.batch_sharding, batch_size, data_process,
                          truncation_check)
  try:
    if latest is not None:
      state, data_state, _ = ckpt.restore(latest, abstract_with_shardings(state_shapes, state_sh),
                                          expected_config=run_config)
      data.check_resumable(data_state)
      start = int(state["step"])
      log.info("Resumed from %s/checkpoints/%d", model_dir, latest)
    else:
      if initial_checkpoint_path:
        params = _load_initial_params(initial_checkpoint_path, cfg, param_sh, param_shapes)
      else:
        params = part.init_params(cfg, jax.random.key(seed))
      opt_state = jax.jit(tx.init, out_shardings=state_sh["opt_state"])(params)
      state = {"step": jax.device_put(jnp.int32(0), part.replicated), "params": params,
               "opt_state": opt_state}
      start = 0
      if truncation_check and not isinstance(batches.source, ProcessBatches):
        check_truncation(mixture_or_task_name, task_feature_lengths,
                         max_examples=truncation_check)
  except BaseException:
    batches.close()  # stop the input threads now, not when the traceback is collected
    raise

  step_fn = jax.jit(make_train_step(cfg, tx, schedule, num_microbatches, z_loss,
                                    loss_normalizing_factor, seed),
                    in_shardings=(state_sh, part.batch_sharding),
                    out_shardings=(state_sh, part.replicated), donate_argnums=0)
  eval_fn = _make_eval(cfg, part, eval_max_examples) if eval_period else None
  writer = MetricsWriter(model_dir, train_steps, start, enabled=primary, tensorboard=tensorboard,
                         progress_bar=progress_bar)
  lengths = dict(task_feature_lengths)
  flops_per_step = flops.train_flops_per_step(cfg, batch_size, lengths["inputs"],
                                              lengths["targets"], remat_policy="none")
  peak = flops.peak_flops(jax.devices()[0].device_kind)
  pending, window_start, last_good = [], time.perf_counter(), latest
  losses = {}

  def flush(step_now: int):
    """Fetch the window's metrics, stop on a non-finite loss, write averaged records."""
    nonlocal pending, window_start
    if not pending:
      return
    fetched = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, fetched):
      if not (np.isfinite(m["loss"]) and np.isfinite(m["update_norm"])):
        what = (f"Loss became {m['loss']}" if not np.isfinite(m["loss"])
                else f"The parameter update became {m['update_norm']}")
        raise NonFiniteLossError(
            f"{what} at step {s}. Training stopped; the last good checkpoint "
            f"is {'step ' + str(last_good) if last_good is not None else 'none'} in "
            f"{model_dir}/checkpoints (nothing later was saved). Lower the learning rate or "
            "check the data.")
      losses[s] = float(m["loss"])
    elapsed = time.perf_counter() - window_start
    n = len(fetched)
    avg = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    tokens = sum(float(m["target_tokens"] + m["input_tokens"]) for m in fetched)
    record = {**avg, "seconds_per_step": elapsed / n, "tokens_per_sec": tokens / elapsed,
              "examples_seen": step_now * batch_size}
    if peak:
      record["mfu"] = flops_per_step * n / elapsed / (peak * jax.device_count())
    writer.write(step_now, record)
    writer.progress(step_now, {"loss": avg["loss"], "acc": avg["accuracy"]})
    pending, window_start = [], time.perf_counter()

  def save(step_now: int, force: bool = False):
    nonlocal last_good
    flush(step_now)  # never save a state whose losses were not checked
    ckpt.save(step_now, state, data.state(step_now), run_config, force=force)
    last_good = step_now

  step = start
  with part.activate(), _Preemption() as preempt, contextlib.closing(batches):
    while step < train_steps:
      batch = distributed.global_batch(next(batches), part.batch_sharding, batch_size)
      state, metrics = step_fn(state, batch)
      step += 1
      pending.append((step, metrics))
      if step % log_period == 0 or step == train_steps:
        flush(step)
      if eval_fn is not None and step % eval_period == 0:
        writer.write(step, eval_fn(state["params"], eval_mixture_or_task_name
                                   or mixture_or_task_name, lengths, batch_size, eval_batches),
                     prefix="eval")
      if step % checkpoint_period == 0 and step != train_steps:
        save(step)
      if preempt.stop_at(step):
        log.warning("%s received: saving a checkpoint at step %d and exiting.", preempt.signal,
                    step)
        save(step, force=True)
        break
    else:
      if latest != train_steps:
        save(step, force=True)
  ckpt.close()
  writer.close()
  return {"step": step, "losses": losses, "params": state["params"],
          "preempted": preempt.signal}


def _host_batches(data: TrainData, start: int, batch_sharding, batch_size: int,
                  data_process: bool = True, truncation_check: int = 0):
  """This process's slice of every batch from `start` on. The first batch is read before any
  collective, and every process learns if some host has no data, instead of waiting for it.
  With `data_process`, the SeqIO pipeline runs in a child process (t0jax/train/data_process.py)."""
  error, first, it = None, None, None
  try:
    index, count = distributed.host_data_slice(batch_sharding, batch_size)
    if data_process:
      get_mixture_or_task(data.mixture_or_task_name)  # a typo fails here, not in the child
      it = ProcessBatches(data, start, index, count,
                          truncation_check_examples=truncation_check)
      try:
        first = next(it)
      except UnregisteredMixture as e:  # the child has already stopped
        log.warning("The data process cannot find %r (%s): reading the data in this process. "
                    "Register the tasks in a module that a gin file imports (`import "
                    "my_project.tasks`) to keep the pipeline out of the training process.",
                    data.mixture_or_task_name, e)
        it = None
    if it is None:
      it = data.host_batches(start, index, count)
      first = next(it)
  except Exception as e:  # noqa: BLE001 - re-raised below, on this and on every other process
    error = e
    if it is not None:
      it.close()
  distributed.raise_if_any_failed(error, "reading the first batch")
  return _FirstThenRest(first, it)


class _FirstThenRest:
  """`first`, then the rest of a batch generator; `close()` also stops the generator's input
  threads (left running, they would outlive a failed `train` inside its traceback)."""

  def __init__(self, first, rest):
    self._first, self._rest = [first], rest

  @property
  def source(self):
    return self._rest

  def __iter__(self):
    return self

  def __next__(self):
    return self._first.pop() if self._first else next(self._rest)

  def close(self):
    self._rest.close()


def _make_eval(cfg: T5Config, part: Partitioner, max_examples: Optional[int]):
  """Periodic evaluation. A mixture or task of score-eval (answer-choice) tasks is evaluated by
  rank classification with t0jax's evaluator (per-dataset median accuracy over original-task
  prompts); anything else by loss and token accuracy on its validation split."""
  model = Transformer(cfg)

  @jax.jit
  def loss_fn(params, batch):
    logits = model.apply({"params": params}, batch["encoder_input_tokens"],
                         batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                         batch.get("encoder_segment_ids"), batch.get("decoder_segment_ids"))
    w = batch.get("decoder_loss_weights", batch["decoder_target_tokens"] > 0)
    loss, _ = cross_entropy_with_z_loss(logits, batch["decoder_target_tokens"], w)
    correct = (jnp.argmax(logits, -1) == batch["decoder_target_tokens"]) * w
    return loss.sum(), correct.sum(), w.sum()

  def rank(params, name, batch_size):
    from t0jax.evaluate.evaluator import evaluate
    results = evaluate(model, params, cfg, name, batch_size=batch_size,
                       max_examples=max_examples, partitioner=part)
    out = {}
    for dataset, entry in results["datasets"].items():
      group = entry.get("original_task") or {}
      acc = group.get("accuracy") or entry.get("all_prompts", {}).get("accuracy")
      if isinstance(acc, dict):
        out[f"{dataset}/median_accuracy"] = acc["median"]
    if out:
      out["median_accuracy_mean_over_datasets"] = float(np.mean(list(out.values())))
    return out

  def run(params, name, lengths, batch_size, num_batches):
    if name.endswith("score_eval"):
      return rank(params, name, batch_size)
    data = TrainData(name, lengths, batch_size, split="validation", shuffle=False)
    it = data.host_batches(0, *distributed.host_data_slice(part.batch_sharding, batch_size))
    tot = np.zeros(3)
    for _ in range(num_batches):
      batch = distributed.global_batch(next(it), part.batch_sharding, batch_size)
      tot += np.array(jax.device_get(loss_fn(params, batch)), np.float64)
    return {"loss": tot[0] / max(tot[2], 1), "accuracy": tot[1] / max(tot[2], 1)}

  return run

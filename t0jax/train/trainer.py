"""The training loop (gin-configurable `train`), used by `t0jax train` (t0jax/cli/train.py).

Reads top to bottom: check the settings (t0jax/train/settings.py), build the mesh and the
optimizer, restore or initialise the train state (t0jax/train/state.py), compile one step with
input/output shardings and donated state, then loop: batch, step, log, evaluate, checkpoint.
The network runs only behind the model seam (t0jax/model/models.py).
"""

import contextlib
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

from t0jax.checkpoints.orbax import Checkpointer, abstract_with_shardings
from t0jax.model import EncoderDecoderModel, T5Config
from t0jax.model.losses import loss_normalizer
from t0jax.model.models import LOSS_SUMS
from t0jax.parallel import distributed, hosts
from t0jax.parallel.partitioning import Partitioner
from t0jax.train import flops, optim
from t0jax.train.data_process import ProcessBatches, UnregisteredMixture
from t0jax.train.input_pipeline import TrainData, check_truncation
from t0jax.data import settings as data_settings
from t0jax.train.settings import RunSettings, target_step
from t0jax.train.state import TrainState, abstract_state, initial_state
from t0jax.train.writer import MetricsWriter

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
    for sig in () if self._multihost else (signal.SIGTERM, signal.SIGINT):
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
    raise PermissionError(
      f"--model_dir {model_dir!r} is not writable ({e.strerror}); choose a "
      "directory you can write to. Nothing was trained."
    ) from e


def make_train_step(
  cfg: T5Config,
  tx: optax.GradientTransformation,
  schedule: Callable,
  num_microbatches: int,
  z_loss: float,
  loss_normalizing_factor,
  seed: int,
  label_smoothing: float = 0.0,
):
  """step(TrainState, batch) -> (TrainState, metrics). Token sums are accumulated over
  microbatches and normalised once, so accumulation equals the full-batch step."""
  model = EncoderDecoderModel.from_config(cfg)
  base_rng = jax.random.key(seed)

  def loss_sums(params, batch, rng):
    return model.loss_sums(
      params, batch, dropout_rng=rng, z_loss=z_loss, label_smoothing=label_smoothing
    )

  grad_fn = jax.value_and_grad(loss_sums, has_aux=True)

  def step(state: TrainState, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    if num_microbatches == 1:
      (_, aux), grads = grad_fn(state.params, batch, rng)
    else:
      micro = jax.tree.map(lambda x: x.reshape((num_microbatches, -1) + x.shape[1:]), batch)

      def body(carry, inputs):
        i, mb = inputs
        (_, aux), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (g, aux)), None

      zeros = (jax.tree.map(jnp.zeros_like, state.params), {k: jnp.float32(0) for k in LOSS_SUMS})
      (grads, aux), _ = jax.lax.scan(body, zeros, (jnp.arange(num_microbatches), micro))
    norm = loss_normalizer(
      batch["decoder_target_tokens"], loss_normalizing_factor, num_real=aux["weight"]
    )
    grads = jax.tree.map(lambda g: g / norm, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)
    tokens = jnp.maximum(aux["weight"], 1.0)
    metrics = {
      "loss": aux["loss_sum"] / tokens,
      "z_loss": aux["z_loss_sum"] / tokens,
      "accuracy": aux["correct"] / tokens,
      "target_tokens": aux["weight"],
      "input_tokens": jnp.sum(batch["encoder_input_tokens"] > 0).astype(jnp.float32),
      "grad_norm": optax.tree.norm(grads),
      "update_norm": optax.tree.norm(updates),
      "learning_rate": schedule(state.step),
    }
    return new_state, metrics

  return step


def initial_checkpoint_step(path: Optional[str]) -> Optional[int]:
  """The step an initial checkpoint carries (t0jax and T5X checkpoints), None for one without
  (Hugging Face) or no checkpoint."""
  if not path:
    return None
  from t0jax import checkpoints

  return checkpoints.read_config(path, flag="INITIAL_CHECKPOINT_PATH").step


def _load_initial_params(path: str, cfg: T5Config, shardings):
  """Parameters of INITIAL_CHECKPOINT_PATH (any format t0jax reads), checked against the gin
  config's shapes and placed in `shardings`."""
  from t0jax import checkpoints

  return checkpoints.load(path, cfg=cfg, shardings=shardings, flag="INITIAL_CHECKPOINT_PATH")[1]


def _keep_vocabulary(name: str, model_dir: str) -> None:
  """Copy the mixture's sentencepiece model to MODEL_DIR/spiece.model, where `t0jax predict`
  and `t0jax eval` look for a checkpoint's vocabulary."""
  from t0jax.catalog import get_task_or_mixture

  vocab = get_task_or_mixture(name).output_features["targets"].vocabulary
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
def train(
  *,
  model_dir: str = gin.REQUIRED,
  mixture_or_task_name: str = gin.REQUIRED,
  task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
  train_steps: Optional[int] = None,
  batch_size: int = gin.REQUIRED,
  model_config: T5Config = gin.REQUIRED,
  optimizer: Callable = optim.adafactor,
  learning_rate_schedule: Optional[Callable] = None,
  initial_checkpoint_path: Optional[str] = None,
  train_steps_relative: Optional[int] = None,
  checkpoint_period: int = 1000,
  keep_checkpoints: Optional[int] = 3,
  log_period: int = 100,
  eval_period: int = 0,
  eval_mixture_or_task_name: Optional[str] = None,
  eval_steps: Optional[int] = None,
  eval_batches: int = 4,
  eval_max_examples: Optional[int] = None,
  eval_mode: str = "auto",
  num_microbatches: int = 1,
  num_partitions: int = 1,
  axis_rules="standard",
  z_loss: float = 1e-4,
  label_smoothing: float = 0.0,
  loss_normalizing_factor="NUM_REAL_TARGET_TOKENS",
  seed: int = 0,
  pack: bool = True,
  num_virtual_shards: int = 8,
  use_cached_tasks: bool = False,
  async_checkpointing: bool = True,
  tensorboard: bool = True,
  progress_bar: bool = True,
  truncation_check_examples: int = 200,
  num_devices: Optional[int] = None,
  data_process: bool = True,
) -> dict:
  """Train to step TRAIN_STEPS (absolute, T5X's way, when the initial checkpoint carries a
  step) or TRAIN_STEPS_RELATIVE steps past the initial checkpoint, resuming from the latest
  checkpoint in `model_dir` if any. `eval_steps` (EVAL_STEPS) has the alias `eval_batches`."""
  s = RunSettings.from_train_args(locals())
  data_settings.configure()  # gin bindings such as t0jax.data.vocab, as eval and infer apply them
  cfg = model_config
  target = _target_step(s)
  _check_writable(model_dir)
  hosts.check_shared_directory(model_dir)
  part = _partitioner(num_partitions, axis_rules, num_devices, s)
  schedule = learning_rate_schedule or optim.constant_schedule()
  tx = optimizer(learning_rate=schedule)
  shapes, shardings = abstract_state(cfg, tx, part)
  d = s.data
  data = TrainData(
    d.mixture_or_task_name,
    d.task_feature_lengths,
    d.batch_size,
    seed=d.seed,
    pack=d.pack,
    num_virtual_shards=d.num_virtual_shards,
    use_cached=d.use_cached_tasks,
  )
  run_config = {"model": cfg.shape_signature(), "data": data.state(0), "model_full": cfg.to_dict()}
  if distributed.is_primary():
    _keep_vocabulary(d.mixture_or_task_name, model_dir)
  ckpt = Checkpointer(
    os.path.join(model_dir, "checkpoints"), s.checkpoint.keep, s.checkpoint.async_save
  )
  evaluate = _make_eval(cfg, part, s) if s.eval.period else None  # a bad name fails here
  state, start, base, batches = _start(s, cfg, tx, part, data, ckpt, shapes, shardings, run_config)
  step_fn = jax.jit(
    make_train_step(
      cfg,
      tx,
      schedule,
      num_microbatches,
      s.loss.z_loss,
      s.loss.loss_normalizing_factor,
      d.seed,
      s.loss.label_smoothing,
    ),
    in_shardings=(shardings, part.batch_sharding),
    out_shardings=(shardings, part.replicated),
    donate_argnums=0,
  )
  progress = _Progress(s, cfg, target, start, base, ckpt.latest_step())
  state, step, preempted = _loop(
    state,
    start,
    step_fn,
    batches,
    part,
    data,
    ckpt,
    run_config,
    progress,
    evaluate,
    s,
    target,
    base,
  )
  ckpt.close()
  progress.writer.close()
  return {"step": step, "losses": progress.losses, "params": state.params, "preempted": preempted}


def _target_step(s: RunSettings) -> int:
  initial = initial_checkpoint_step(s.checkpoint.initial_checkpoint_path)
  target = target_step(s.train_steps, s.train_steps_relative, initial)
  if s.train_steps_relative is not None and s.train_steps is not None:
    log.info(
      "TRAIN_STEPS_RELATIVE=%d is set: it overrides TRAIN_STEPS=%d.",
      s.train_steps_relative,
      s.train_steps,
    )
  if initial is not None:
    log.info(
      "The initial checkpoint is at step %d; training to step %d is %d fine-tuning steps "
      "(T5X's convention: steps count from the checkpoint's step).",
      initial,
      target,
      target - initial,
    )
  return target


def _partitioner(
  num_partitions: int, axis_rules, num_devices: Optional[int], s: RunSettings
) -> Partitioner:
  if num_devices and jax.process_count() > 1:
    raise ValueError(
      f"train.num_devices={num_devices} picks devices of one host; it cannot be "
      f"used with {jax.process_count()} processes. Remove it."
    )
  devices = jax.devices()[:num_devices] if num_devices else None
  part = Partitioner(num_partitions, axis_rules, devices=devices)
  if s.data.batch_size % (part.data_parallel_size * s.num_microbatches):
    raise ValueError(
      f"BATCH_SIZE={s.data.batch_size} must be divisible by data-parallel size "
      f"{part.data_parallel_size} x num_microbatches {s.num_microbatches}."
    )
  return part


def _start(
  s: RunSettings,
  cfg: T5Config,
  tx,
  part: Partitioner,
  data: TrainData,
  ckpt: Checkpointer,
  shapes: TrainState,
  shardings: TrainState,
  run_config: dict,
):
  """(state, its step, the step the data stream starts from, this host's batches): restored
  from MODEL_DIR's latest checkpoint, else initialised (INITIAL_CHECKPOINT_PATH or random).

  Every host reads its first batch before the costly part (restore or init, compilation), so a
  host without its share of the data stops all hosts at once. The truncation check samples the
  mixture once, on a fresh start, on process 0 (in the data process when there is one).
  """
  latest = ckpt.latest_step()
  # The data stream counts steps of this fine-tuning run; the state counts from the initial
  # checkpoint's step (T5X), so the two differ by that step.
  consumed = 0 if latest is None else int(ckpt.read_meta(latest)[0].get("step", latest))
  primary = distributed.is_primary()
  truncation = s.data.truncation_check_examples if primary and latest is None else 0
  batches = _host_batches(
    data, consumed, part.batch_sharding, s.data.batch_size, s.data.data_process, truncation
  )
  try:
    if latest is not None:
      tree, data_state, _ = ckpt.restore(
        latest,
        abstract_with_shardings(shapes.as_tree(), shardings.as_tree()),
        expected_config=run_config,
      )
      data.check_resumable(data_state)
      log.info("Resumed from %s/checkpoints/%d", s.model_dir, latest)
      return TrainState.from_tree(tree), latest, latest - consumed, batches
    path = s.checkpoint.initial_checkpoint_path
    if path:
      params = _load_initial_params(path, cfg, shardings.params)
    else:
      params = part.init_params(cfg, jax.random.key(s.data.seed))
    start = initial_checkpoint_step(path) or 0
    state = initial_state(params, tx, shardings, start)
    if truncation and not isinstance(batches.source, ProcessBatches):
      check_truncation(
        s.data.mixture_or_task_name,
        s.data.task_feature_lengths,
        max_examples=truncation,
        use_cached=data.use_cached,
        cache_dirs=data.cache_dirs,
      )
    return state, start, start, batches
  except BaseException:
    batches.close()  # stop the input threads now, not when the traceback is collected
    raise


class _Progress:
  """The steps since the last log record: their metrics are fetched, checked (a non-finite loss
  or update stops training before anything past the last good checkpoint is saved), averaged
  and written."""

  def __init__(
    self,
    s: RunSettings,
    cfg: T5Config,
    target: int,
    start: int,
    base: int,
    last_good: Optional[int],
  ):
    lengths = s.data.task_feature_lengths
    self.writer = MetricsWriter(
      s.model_dir,
      target,
      start,
      enabled=distributed.is_primary(),
      tensorboard=s.log.tensorboard,
      progress_bar=s.log.progress_bar,
    )
    self.flops_per_step = flops.train_flops_per_step(
      cfg, s.data.batch_size, lengths["inputs"], lengths["targets"], remat_policy="none"
    )
    self.peak = flops.peak_flops(jax.devices()[0].device_kind)
    self.model_dir, self.batch_size, self.base = s.model_dir, s.data.batch_size, base
    self.pending, self.window_start = [], time.perf_counter()
    self.last_good, self.losses = last_good, {}

  def add(self, step: int, metrics) -> None:
    self.pending.append((step, metrics))

  def flush(self, step_now: int) -> None:
    if not self.pending:
      return
    fetched = jax.device_get([m for _, m in self.pending])
    for (step, _), m in zip(self.pending, fetched):
      self._check_finite(step, m)
      self.losses[step] = float(m["loss"])
    elapsed = time.perf_counter() - self.window_start
    n = len(fetched)
    avg = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    tokens = sum(float(m["target_tokens"] + m["input_tokens"]) for m in fetched)
    record = {
      **avg,
      "seconds_per_step": elapsed / n,
      "tokens_per_sec": tokens / elapsed,
      "examples_seen": (step_now - self.base) * self.batch_size,
    }
    if self.peak:
      record["mfu"] = self.flops_per_step * n / elapsed / (self.peak * jax.device_count())
    self.writer.write(step_now, record)
    self.writer.progress(step_now, {"loss": avg["loss"], "acc": avg["accuracy"]})
    self.pending, self.window_start = [], time.perf_counter()

  def _check_finite(self, step: int, m) -> None:
    if np.isfinite(m["loss"]) and np.isfinite(m["update_norm"]):
      return
    what = (
      f"Loss became {m['loss']}"
      if not np.isfinite(m["loss"])
      else f"The parameter update became {m['update_norm']}"
    )
    good = "none" if self.last_good is None else f"step {self.last_good}"
    raise NonFiniteLossError(
      f"{what} at step {step}. Training stopped; the last good checkpoint is {good} in "
      f"{self.model_dir}/checkpoints (nothing later was saved). Lower the learning rate or "
      "check the data."
    )


def _loop(
  state: TrainState,
  start: int,
  step_fn,
  batches,
  part: Partitioner,
  data: TrainData,
  ckpt: Checkpointer,
  run_config: dict,
  progress: _Progress,
  evaluate,
  s: RunSettings,
  target: int,
  base: int,
):
  """Steps `start` -> `target`: (final state, its step, the signal that stopped it or None)."""
  latest = ckpt.latest_step()

  def save(step_now: int, force: bool = False):
    progress.flush(step_now)  # never save a state whose losses were not checked
    ckpt.save(step_now, state.as_tree(), data.state(step_now - base), run_config, force=force)
    progress.last_good = step_now

  step = start
  with part.activate(), _Preemption() as preempt, contextlib.closing(batches):
    while step < target:
      batch = hosts.global_batch(next(batches), part.batch_sharding, batches.num_slices)
      state, metrics = step_fn(state, batch)
      step += 1
      progress.add(step, metrics)
      if step % s.log.period == 0 or step == target:
        progress.flush(step)
      if evaluate is not None and step % s.eval.period == 0:
        progress.writer.write(step, evaluate(state.params), prefix="eval")
      if step % s.checkpoint.period == 0 and step != target:
        save(step)
      if preempt.stop_at(step):
        log.warning(
          "%s received: saving a checkpoint at step %d and exiting.", preempt.signal, step
        )
        save(step, force=True)
        break
    else:
      if latest != target:
        save(step, force=True)
  return state, step, preempt.signal


def _host_batches(
  data: TrainData,
  start: int,
  batch_sharding,
  batch_size: int,
  data_process: bool = True,
  truncation_check: int = 0,
):
  """This process's slice of every batch from data step `start` on. The first batch is read
  before any collective, and every process learns if some host has no data, instead of waiting
  for it. With `data_process`, the SeqIO pipeline runs in a child process
  (t0jax/train/data_process.py)."""
  error, first, it, count = None, None, None, 1
  try:
    index, count = hosts.host_data_slice(batch_sharding, batch_size)
    if data_process:
      from t0jax.catalog import get_task_or_mixture

      get_task_or_mixture(data.mixture_or_task_name)  # a typo fails here, not in the child
      it = ProcessBatches(data, start, index, count, truncation_check_examples=truncation_check)
      try:
        first = next(it)
      except UnregisteredMixture as e:  # the child has already stopped
        log.warning(
          "The data process cannot find %r (%s): reading the data in this process. "
          "Register the tasks in a module that a gin file imports (`import "
          "my_project.tasks`) to keep the pipeline out of the training process.",
          data.mixture_or_task_name,
          e,
        )
        it = None
    if it is None:
      it = data.host_batches(start, index, count)
      first = next(it)
  except Exception as e:  # noqa: BLE001 - re-raised below, on this and on every other process
    error = e
    if it is not None:
      it.close()
  hosts.raise_if_any_failed(error, "reading the first batch")
  return _FirstThenRest(first, it, count)


class _FirstThenRest:
  """`first`, then the rest of a batch generator; `close()` also stops the generator's input
  threads (left running, they would outlive a failed `train` inside its traceback)."""

  def __init__(self, first, rest, num_slices: int):
    self._first, self._rest, self.num_slices = [first], rest, num_slices

  @property
  def source(self):
    return self._rest

  def __iter__(self):
    return self

  def __next__(self):
    return self._first.pop() if self._first else next(self._rest)

  def close(self):
    self._rest.close()


def _make_eval(cfg: T5Config, part: Partitioner, s: RunSettings):
  """The periodic evaluation, params -> figures, of EVAL_MIXTURE_OR_TASK_NAME (default: the
  training mixture), as `train.eval_mode` says: 'rank' is rank classification by t0jax's
  evaluator (per-dataset median accuracy over original-task prompts), 'loss' the validation
  loss and token accuracy, 'auto' rank when every task of the mixture has answer choices."""
  name = s.eval.mixture_or_task_name or s.data.mixture_or_task_name
  mode = s.eval.mode
  if mode == "auto":
    mode = "rank" if all_tasks_have_choices(name) else "loss"
  log.info(
    "Evaluating %s every %d steps (%s).",
    name,
    s.eval.period,
    "rank classification" if mode == "rank" else "validation loss",
  )
  model = EncoderDecoderModel.from_config(cfg)
  if mode == "rank":
    return lambda params: _rank_eval(model, params, part, name, s)
  return _loss_eval(model, part, name, s)


def all_tasks_have_choices(name: str) -> bool:
  """Whether every task of a mixture (or the task) yields answer choices: the catalogue's
  score-eval tasks, or any task whose examples carry `choices`/`answer_choices`."""
  from t0jax.evaluate.evaluator import resolve_tasks

  return all(_has_choices(task) for task in resolve_tasks(name))


def _has_choices(task) -> bool:
  import t0jax.catalog as catalog

  try:
    return bool(catalog.task_info(task.name).score_eval)
  except KeyError:
    pass
  try:
    spec = task.get_dataset(
      sequence_length=None, split="validation", shuffle=False, num_epochs=1
    ).element_spec
  except Exception:  # noqa: BLE001 - a task without a validation split cannot be rank-scored
    return False
  return "choices" in spec or "answer_choices" in spec


def _rank_eval(
  model: EncoderDecoderModel, params, part: Partitioner, name: str, s: RunSettings
) -> dict:
  from t0jax.evaluate.evaluator import evaluate

  results = evaluate(
    model,
    params,
    model.config,
    name,
    batch_size=s.data.batch_size,
    max_examples=s.eval.max_examples,
    partitioner=part,
  )
  out = {}
  for dataset, entry in results["datasets"].items():
    group = entry.get("original_task") or {}
    acc = group.get("accuracy") or entry.get("all_prompts", {}).get("accuracy")
    if isinstance(acc, dict):
      out[f"{dataset}/median_accuracy"] = acc["median"]
  if out:
    out["median_accuracy_mean_over_datasets"] = float(np.mean(list(out.values())))
  return out


def _loss_eval(model: EncoderDecoderModel, part: Partitioner, name: str, s: RunSettings):
  """Loss and token accuracy over EVAL_STEPS batches of the validation split (no z-loss, no
  label smoothing: the plain cross entropy, comparable across runs)."""

  @jax.jit
  def sums(params, batch):
    _, aux = model.loss_sums(params, batch)
    return aux["loss_sum"], aux["correct"], aux["weight"]

  def run(params) -> dict:
    data = TrainData(
      name, s.data.task_feature_lengths, s.data.batch_size, split="validation", shuffle=False
    )
    index, count = hosts.host_data_slice(part.batch_sharding, s.data.batch_size)
    total = np.zeros(3)
    with contextlib.closing(data.host_batches(0, index, count)) as it:
      for _ in range(s.eval.steps):
        batch = hosts.global_batch(next(it), part.batch_sharding, count)
        total += np.array(jax.device_get(sums(params, batch)), np.float64)
    return {"loss": total[0] / max(total[2], 1), "accuracy": total[1] / max(total[2], 1)}

  return run

"""T5X names that t0jax spells differently: one table, read by the gin parser (a command-line
binding of an `accept` row is translated; any other use of a T5X name fails with the t0jax
spelling) and printed into docs/t5x.md (`python -m t0jax.cli.t5x_names` writes the table).

Each row: the T5X name (a configurable's parameter or a macro), the t0jax name, whether t0jax
accepts it on the command line (`accept`: same meaning, translated) or refuses it (`refuse`: the
meaning differs or t0jax has no such setting; the note says what to do), and a note.
"""

import dataclasses
import re
from typing import Callable, Dict, List, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Name:
  t5x: str
  t0jax: str
  action: str  # 'accept' or 'refuse'
  note: str = ""
  value: Optional[Callable] = None  # T5X value -> t0jax value, when the spellings differ

  def translate(self, value):
    return self.value(value) if self.value else value


def _microbatches(value):
  return 1 if value is None else value  # T5X's None: one batch, no accumulation


ACCEPT, REFUSE = "accept", "refuse"

NAMES: Tuple[Name, ...] = (
  # Partitioning.
  Name(
    "partitioning.PjitPartitioner.num_partitions",
    "NUM_PARTITIONS",
    ACCEPT,
    "devices on the mesh's 'model' axis",
  ),
  Name(
    "partitioning.PjitPartitioner.model_parallel_submesh",
    "NUM_PARTITIONS",
    REFUSE,
    "t0jax builds a ('data', 'model') mesh from the number of model partitions: set "
    "NUM_PARTITIONS to the submesh's size",
  ),
  Name(
    "partitioning.PjitPartitioner.logical_axis_rules",
    "AXIS_RULES",
    REFUSE,
    "t0jax names its rule tables: AXIS_RULES = 'standard' (T5X's) or 'fsdp'",
  ),
  Name(
    "partitioning.standard_logical_axis_rules",
    "AXIS_RULES",
    REFUSE,
    "AXIS_RULES = 'standard' is T5X's table; 'fsdp' also shards parameters over 'data'",
  ),
  # Checkpoints.
  Name(
    "utils.SaveCheckpointConfig.period", "CHECKPOINT_PERIOD", ACCEPT, "steps between checkpoints"
  ),
  Name(
    "utils.SaveCheckpointConfig.keep", "KEEP_CHECKPOINTS", ACCEPT, "checkpoints kept (None: all)"
  ),
  Name(
    "utils.SaveCheckpointConfig.dtype",
    "-",
    REFUSE,
    "t0jax saves parameters and optimizer state in float32; remove the binding",
  ),
  Name(
    "utils.SaveCheckpointConfig.save_dataset",
    "-",
    REFUSE,
    "t0jax always saves the data position (a resumed run reads the batches it would have "
    "read); remove the binding",
  ),
  Name(
    "utils.RestoreCheckpointConfig.path",
    "INITIAL_CHECKPOINT_PATH",
    ACCEPT,
    "checkpoint to fine-tune from (t0jax or Hugging Face)",
  ),
  Name(
    "utils.RestoreCheckpointConfig.mode",
    "-",
    REFUSE,
    "training resumes from MODEL_DIR's latest checkpoint, else starts from "
    "INITIAL_CHECKPOINT_PATH; to evaluate every checkpoint ('all') use "
    "`t0jax eval --checkpoint_steps all`",
  ),
  Name(
    "utils.RestoreCheckpointConfig.dtype",
    "-",
    REFUSE,
    "parameters are restored in float32; set ACTIVATION_DTYPE for bfloat16 activations",
  ),
  # Trainer, optimizer, schedule.
  Name(
    "trainer.Trainer.num_microbatches",
    "NUM_MICROBATCHES",
    ACCEPT,
    "gradient accumulation steps per batch (T5X's None is 1)",
    _microbatches,
  ),
  Name(
    "utils.create_learning_rate_scheduler.base_learning_rate",
    "LEARNING_RATE",
    ACCEPT,
    "constant learning rate (T0's: 1e-3)",
  ),
  Name(
    "utils.create_learning_rate_scheduler.factors",
    "train.learning_rate_schedule",
    REFUSE,
    "bind train.learning_rate_schedule = @t0jax.optim.constant_schedule() or "
    "@t0jax.optim.rsqrt_schedule()",
  ),
  Name(
    "utils.create_learning_rate_scheduler.warmup_steps",
    "t0jax.optim.rsqrt_schedule.warmup_steps",
    REFUSE,
    "warm-up belongs to the rsqrt schedule: train.learning_rate_schedule = "
    "@t0jax.optim.rsqrt_schedule() and t0jax.optim.rsqrt_schedule.warmup_steps = N",
  ),
  Name(
    "adafactor.Adafactor.decay_rate",
    "t0jax.optim.adafactor.decay_rate",
    ACCEPT,
    "Adafactor's second-moment decay exponent",
  ),
  Name(
    "adafactor.Adafactor.adafactor_decay_rate_fn",
    "t0jax.optim.adafactor.decay_rate",
    REFUSE,
    "t0jax's Adafactor (optax) takes the decay exponent: t0jax.optim.adafactor.decay_rate = 0.8",
  ),
  Name(
    "adafactor.Adafactor.step_offset",
    "-",
    REFUSE,
    "t0jax counts the decay from the fine-tuning start; remove the binding",
  ),
  Name(
    "train_script.train.total_steps",
    "TRAIN_STEPS",
    ACCEPT,
    "absolute step to stop at when the initial checkpoint carries a step (as T5X)",
  ),
  Name("train_script.train.eval_period", "EVAL_PERIOD", ACCEPT, "steps between evaluations"),
  Name(
    "train_script.train.eval_steps", "EVAL_STEPS", ACCEPT, "batches per validation-loss evaluation"
  ),
  Name(
    "train_script.train.random_seed",
    "RANDOM_SEED",
    ACCEPT,
    "initialisation, dropout and data-order seed (alias: SEED)",
  ),
  Name("train_script.train.stats_period", "LOG_PERIOD", ACCEPT, "steps between metric records"),
  Name(
    "train_script.train.use_hardware_rng",
    "-",
    REFUSE,
    "t0jax always uses the deterministic software RNG; remove the binding",
  ),
  # Data.
  Name(
    "train/utils.DatasetConfig.mixture_or_task_name",
    "MIXTURE_OR_TASK_NAME",
    ACCEPT,
    "training mixture or task",
  ),
  Name(
    "train/utils.DatasetConfig.task_feature_lengths",
    "TASK_FEATURE_LENGTHS",
    ACCEPT,
    "{'inputs': N, 'targets': M}",
  ),
  Name(
    "train/utils.DatasetConfig.batch_size",
    "BATCH_SIZE",
    ACCEPT,
    "global batch (sequences per step)",
  ),
  Name(
    "train/utils.DatasetConfig.use_cached",
    "USE_CACHED_TASKS",
    ACCEPT,
    "read SeqIO's cached (preprocessed) task data",
  ),
  Name("train/utils.DatasetConfig.pack", "train.pack", ACCEPT, "pack training examples"),
  Name(
    "train/utils.DatasetConfig.module",
    "MIXTURE_OR_TASK_MODULE",
    ACCEPT,
    "module that registers the tasks",
  ),
  Name(
    "train/utils.DatasetConfig.seed",
    "RANDOM_SEED",
    REFUSE,
    "one seed orders the data and initialises the model: set RANDOM_SEED",
  ),
  # Model (network.T5Config -> t0jax's T5Config, Hugging Face's field names).
  Name("network.T5Config.emb_dim", "T5Config.d_model", ACCEPT, "model width"),
  Name("network.T5Config.num_heads", "T5Config.num_heads", ACCEPT, "attention heads"),
  Name("network.T5Config.head_dim", "T5Config.head_dim", ACCEPT, "width of one head"),
  Name("network.T5Config.mlp_dim", "T5Config.d_ff", ACCEPT, "MLP hidden width"),
  Name("network.T5Config.num_encoder_layers", "T5Config.num_layers", ACCEPT, "encoder layers"),
  Name(
    "network.T5Config.num_decoder_layers", "T5Config.num_decoder_layers", ACCEPT, "decoder layers"
  ),
  Name("network.T5Config.vocab_size", "T5Config.vocab_size", ACCEPT, "embedding rows"),
  Name(
    "network.T5Config.dropout_rate",
    "T5Config.dropout_rate",
    ACCEPT,
    "dropout (the macro DROPOUT_RATE binds it)",
  ),
  Name(
    "network.T5Config.logits_via_embedding",
    "T5Config.tie_word_embeddings",
    ACCEPT,
    "tied output projection (T5 v1.0)",
  ),
  Name(
    "network.T5Config.mlp_activations",
    "T5Config.mlp_activations",
    ACCEPT,
    "('gelu', 'linear') is v1.1's gated GELU",
  ),
  Name("network.T5Config.dtype", "ACTIVATION_DTYPE", ACCEPT, "activation dtype"),
  Name(
    "network.T5Config.float32_attention_logits",
    "-",
    REFUSE,
    "t0jax computes attention logits in float32 always; remove the binding",
  ),
  Name(
    "network.T5Config.scan_layers", "T5Config.scan_layers", ACCEPT, "layers as one scanned stack"
  ),
  Name(
    "network.T5Config.remat_policy", "T5Config.remat_policy", ACCEPT, "rematerialisation policy"
  ),
  Name("models.EncoderDecoderModel.z_loss", "Z_LOSS", ACCEPT, "z-loss coefficient"),
  Name("models.EncoderDecoderModel.label_smoothing", "LABEL_SMOOTHING", ACCEPT, "label smoothing"),
  Name(
    "models.EncoderDecoderModel.loss_normalizing_factor",
    "LOSS_NORMALIZING_FACTOR",
    ACCEPT,
    "'NUM_REAL_TARGET_TOKENS', a number, or None (sum)",
  ),
  # T5X macros t0jax does not define.
  Name(
    "MODEL",
    "-",
    REFUSE,
    "t0jax has one model class: include a gin/models/*.gin file (or bind T5Config fields)",
  ),
  Name(
    "EVALUATOR_NUM_EXAMPLES",
    "EVAL_MAX_EXAMPLES",
    ACCEPT,
    "examples per task in periodic rank-classification evaluation",
  ),
  Name(
    "USE_HARDWARE_RNG",
    "-",
    REFUSE,
    "t0jax always uses the deterministic software RNG; remove the binding",
  ),
  Name(
    "SHUFFLE_TRAIN_EXAMPLES",
    "-",
    REFUSE,
    "t0jax always shuffles training data (deterministically, by RANDOM_SEED)",
  ),
  Name(
    "JSON_WRITE_N_RESULTS",
    "-",
    REFUSE,
    "t0jax eval writes every result (--per_example adds per-example scores)",
  ),
  Name("EVALUATOR_USE_MEMORY_CACHE", "-", REFUSE, "remove the binding"),
  Name("INFER_OUTPUT_DIR", "--output_dir", REFUSE, "give `t0jax infer --output_dir DIR`"),
  Name("EVAL_OUTPUT_DIR", "--output_dir", REFUSE, "give `t0jax eval --output_dir DIR`"),
  Name("CHECKPOINT_PATH", "--checkpoint", REFUSE, "give `t0jax eval|infer --checkpoint PATH`"),
)

# T5X spells the same configurable with several module prefixes; all resolve to one row.
_PREFIXES = ("t5x.", "t5x.examples.t5.", "t5x.contrib.gpu.t5.")
BY_T5X: Dict[str, Name] = {n.t5x: n for n in NAMES}


def lookup(name: str) -> Optional[Name]:
  """The row of a T5X name (`partitioning.PjitPartitioner.num_partitions`, `MODEL`), also when
  written with a full module path or a gin scope (`train/utils.DatasetConfig.batch_size`)."""
  name = name.strip()
  if name in BY_T5X:
    return BY_T5X[name]
  for prefix in _PREFIXES:
    if name.startswith(prefix) and name[len(prefix) :] in BY_T5X:
      return BY_T5X[name[len(prefix) :]]
  bare = name.split("/")[-1]
  if bare != name:  # a scope T5X uses for several datasets (train_eval/, infer_eval/)
    for row in NAMES:
      if row.t5x.split("/")[-1] == bare:
        return row
  return None


def lookup_prefix(name: str) -> Optional[Name]:
  """The first row whose T5X configurable starts with `name` (gin reports the configurable,
  `network.T5Config`, without the parameter)."""
  for row in NAMES:
    if row.t5x.rsplit(".", 1)[0] == name or any(
      row.t5x.rsplit(".", 1)[0] == name[len(p) :] for p in _PREFIXES if name.startswith(p)
    ):
      return row
  return None


def binding(row: Name, value: str) -> str:
  """A t0jax gin binding `NAME = VALUE` for an accepted T5X binding."""
  if row.value is not None:
    import gin

    value = repr(row.translate(gin.config.parse_value(value)))
  return f"{row.t0jax} = {value}"


def explain(row: Name) -> str:
  if row.action == ACCEPT:
    return f"T5X's {row.t5x} is t0jax's {row.t0jax}: write {row.t0jax} = ... in gin files"
  target = f" (t0jax: {row.t0jax})" if row.t0jax not in ("-",) else ""
  return f"T5X's {row.t5x}{target} differs in t0jax: {row.note}"


def markdown_table() -> str:
  """The table of docs/t5x.md, generated from NAMES."""
  lines = ["| T5X | t0jax | on the command line | note |", "|---|---|---|---|"]
  for row in NAMES:
    t0 = "-" if row.t0jax == "-" else f"`{row.t0jax}`"
    act = "translated" if row.action == ACCEPT else "refused with the t0jax spelling"
    lines.append(f"| `{row.t5x}` | {t0} | {act} | {row.note} |")
  return "\n".join(lines)


BEGIN, END = "<!-- t5x_names: begin -->", "<!-- t5x_names: end -->"


def update_doc(path: str) -> bool:
  """Rewrite the generated table between the markers of `path`; True when it changed."""
  from pathlib import Path

  text = Path(path).read_text()
  pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
  new = pattern.sub(lambda _: f"{BEGIN}\n{markdown_table()}\n{END}", text)
  if new != text:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)
  return new != text


def doc_table(text: str) -> List[str]:
  """The generated table's lines found in a document (for the test that they agree)."""
  m = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.S)
  return m.group(1).splitlines() if m else []


if __name__ == "__main__":
  import sys
  from pathlib import Path

  doc = Path(__file__).resolve().parents[2] / "docs" / "t5x.md"
  print(("updated " if update_doc(str(doc)) else "up to date: ") + str(doc))
  sys.exit(0)

"""`t0jax plan`: will a gin-configured run fit on a topology, and how long will a step take?

  t0jax plan --gin_file=gin/experiments/t0_11b.gin --topology v3-512
  t0jax plan --gin_file=gin/experiments/t0_3b.gin --topology 8xA100-40GB --gin.NUM_PARTITIONS=4

Exit status: 0 when the run fits, 1 when it does not (with settings that would), 2 on bad input.
The model behind the numbers is `t0jax.train.planning`.
"""

import dataclasses
import functools
import inspect
import json
import sys

from t0jax.cli import common
from t0jax.cli import gin_flags as gin_flags_lib
from t0jax.train import planning
from t0jax.model.config import REMAT_POLICIES

_PART_LABELS = {
  "params": "parameters (float32)",
  "optimizer": "optimizer state",
  "gradients": "gradients (float32)",
  "activations": "activations",
  "batch": "input batch",
}


def settings_from_gin(gin_files, gin_flags, flag_labels=None) -> planning.RunSettings:
  """The `train(...)` arguments the gin files give, with the trainer's defaults for the rest."""
  import gin
  from t0jax.train import trainer

  gin.clear_config()
  try:
    gin_flags_lib.parse(gin_files, gin_flags, finalize=False, flag_labels=flag_labels)
    bound = gin.get_bindings("t0jax.train", resolve_references=True)
    defaults = {k: p.default for k, p in inspect.signature(trainer.train).parameters.items()}
    args = {**defaults, **bound}
    # The optimizer reads its gin bindings when called: keep them, the config is cleared below.
    args["optimizer"] = functools.partial(args["optimizer"], **gin.get_bindings(args["optimizer"]))
  finally:
    gin.clear_config()  # leave no configuration behind for whatever runs next in this process
  missing = [
    k for k in ("model_config", "batch_size", "task_feature_lengths") if not _given(args.get(k))
  ]
  if missing:
    raise planning.PlanError(
      f"the gin files do not set train.{', train.'.join(missing)}; "
      "include a run config such as gin/runs/finetune.gin and a model."
    )
  lengths = dict(args["task_feature_lengths"])
  if "inputs" not in lengths or "targets" not in lengths:
    raise planning.PlanError(f"TASK_FEATURE_LENGTHS={lengths} needs 'inputs' and 'targets'.")
  return planning.RunSettings(
    cfg=args["model_config"],
    batch_size=int(args["batch_size"]),
    input_length=int(lengths["inputs"]),
    target_length=int(lengths["targets"]),
    num_partitions=int(args["num_partitions"]),
    axis_rules=args["axis_rules"],
    num_microbatches=int(args["num_microbatches"]),
    optimizer=args["optimizer"],
    train_steps=int(args["train_steps"]) if _given(args.get("train_steps")) else 0,
  )


def _given(value) -> bool:
  import gin

  return value is not None and value is not gin.REQUIRED and type(value).__name__ != "object"


def _gib(x: float) -> str:
  return f"{x / planning.GiB:8.2f}"


def _flags_for(p: planning.Plan, base: planning.RunSettings, base_remat: str) -> str:
  s, out = p.settings, []
  if s.num_partitions != base.num_partitions:
    out.append(f"--gin.NUM_PARTITIONS={s.num_partitions}")
  if s.axis_rules != base.axis_rules:
    out.append(f"--gin.AXIS_RULES=\"'{s.axis_rules}'\"")
  if p.remat_policy != base_remat:
    out.append(f"--gin.T5Config.remat_policy=\"'{p.remat_policy}'\"")
  if s.num_microbatches != base.num_microbatches:
    out.append(f"--gin.NUM_MICROBATCHES={s.num_microbatches}")
  return " ".join(out)


def report(p: planning.Plan, gin_files, alternatives=()) -> str:
  t, s, cfg = p.topology, p.settings, p.settings.cfg
  unit = {"tpu": "TPU", "gpu": "GPU"}[t.kind]
  device = (
    "TensorCore"
    if t.kind == "tpu" and t.name.lower().startswith(("v2", "v3"))
    else ("chip" if t.kind == "tpu" else "GPU")
  )
  lines = [
    f"plan: {' + '.join(gin_files)} on {t.name}",
    f"  {unit}: {t.num_devices} devices (one per {device}), {t.num_hosts} host(s) x "
    f"{t.devices_per_host}; {t.hbm_bytes / planning.GiB:.1f} GiB HBM and "
    f"{t.peak_flops / 1e12:.1f} TFLOP/s bf16 peak per device",
    f"  model: {cfg.num_params() / 1e9:.2f}B parameters (d_model {cfg.d_model}, "
    f"{cfg.num_layers}+{cfg.decoder_layers} layers), activations {cfg.dtype}, "
    f"remat '{p.remat_policy}'",
    f"  layout: data {p.data_parallel} x model {s.num_partitions} (AXIS_RULES "
    f"'{s.axis_rules}'); batch {s.batch_size} = {p.rows_per_device} sequence(s) per device "
    f"per microbatch x {s.num_microbatches} microbatch(es); inputs {s.input_length} / targets "
    f"{s.target_length} tokens",
    "",
    "  memory per device                 GiB",
  ]
  for key, label in _PART_LABELS.items():
    lines.append(f"    {label:<28}{_gib(p.memory[key])}")
  lines += [
    f"    {'total':<28}{_gib(p.memory['total'])}",
    f"    {'usable (HBM less margin)':<28}{_gib(p.usable_bytes)}",
  ]
  spare = p.usable_bytes - p.memory["total"]
  lines.append(
    f"  fits: {'yes' if p.fits else 'NO'} ({abs(spare) / planning.GiB:.2f} GiB "
    f"{'to spare' if p.fits else 'short'})"
  )
  lines += [
    "",
    "  compute",
    f"    model FLOPs per step        {p.model_flops:.3e}  (forward + backward, matmuls)",
    f"    with recomputation          {p.hardware_flops:.3e}  (remat '{p.remat_policy}')",
    f"    step time                   {p.step_seconds:8.2f} s  (executed FLOPs at {p.mfu:.0%}"
    f" of peak; model FLOPs utilisation {p.model_flops / p.hardware_flops * p.mfu:.0%})",
  ]
  if s.train_steps:
    lines.append(f"    {s.train_steps:,} steps               {p.run_hours:8.1f} h")
  if t.kind == "gpu":
    lines.append(
      "  note: JAX takes 75% of GPU memory unless XLA_PYTHON_CLIENT_MEM_FRACTION is "
      "raised; launch/gpu_slurm.sh sets 0.92."
    )
  if not p.fits:
    if alternatives:
      lines += [
        "",
        "  settings that fit (fastest first; communication is not modelled, so "
        "compare them on the hardware):",
      ]
      for alt in alternatives:
        lines.append(
          f"    {_gib(alt.memory['total']).strip():>6} GiB, "
          f"{alt.step_seconds:.2f} s/step: "
          f"{_flags_for(alt, s, p.remat_policy)}"
        )
    else:
      lines += ["", f"  no nearby setting fits on {t.name}: use a larger topology."]
  return "\n".join(lines)


def as_json(p: planning.Plan) -> dict:
  s = p.settings
  return {
    "topology": dataclasses.asdict(p.topology),
    "fits": p.fits,
    "memory_bytes_per_device": p.memory,
    "usable_bytes_per_device": p.usable_bytes,
    "data_parallel": p.data_parallel,
    "num_partitions": s.num_partitions,
    "axis_rules": s.axis_rules,
    "num_microbatches": s.num_microbatches,
    "rows_per_device": p.rows_per_device,
    "remat_policy": p.remat_policy,
    "model_flops_per_step": p.model_flops,
    "hardware_flops_per_step": p.hardware_flops,
    "mfu": p.mfu,
    "step_seconds": p.step_seconds,
    "run_hours": p.run_hours if s.train_steps else None,
  }


def _parser():
  p = common.parser(
    "plan",
    "Per-device memory, FLOPs and step time of a gin-configured training run on a TPU "
    "slice or GPU cluster.",
    gin=True,
    verbose=False,
  )
  p.add_argument(
    "--topology",
    required=True,
    help=f"e.g. {planning.EXAMPLES}. TPU v2/v3/v4/v5p names count TensorCores, "
    "v5e/v6e names count chips",
  )
  p.add_argument(
    "--mfu",
    type=float,
    default=0.35,
    help="share of peak FLOP/s the step's executed FLOPs reach (default 0.35; "
    "published T5 runs reach 0.25-0.37 MFU); rematerialised FLOPs count, so "
    "recomputation lengthens the step",
  )
  p.add_argument(
    "--margin",
    type=float,
    default=0.1,
    help="fraction of device memory kept free for XLA's temporaries (default 0.1)",
  )
  p.add_argument("--remat_policy", choices=REMAT_POLICIES, help="override T5Config.remat_policy")
  p.add_argument("--json", action="store_true", help="print one JSON object")
  return p


def _body(ctx) -> int:
  args = ctx.args
  if not ctx.gin_files:
    raise common.UsageError("--gin_file is required (e.g. --gin_file=gin/experiments/t0_3b.gin).")
  topology = planning.parse_topology(args.topology)
  settings = settings_from_gin(
    ctx.gin_files, [f for _, f in ctx.gin_flags], [label for label, _ in ctx.gin_flags]
  )
  p = planning.plan(settings, topology, args.mfu, args.margin, args.remat_policy)
  alts = (
    []
    if p.fits
    else planning.alternatives(settings, topology, args.mfu, args.margin, args.remat_policy)
  )
  if args.json:
    print(json.dumps({**as_json(p), "alternatives": [as_json(a) for a in alts]}, indent=2))
  else:
    print(report(p, ctx.gin_files, alts))
  return 0 if p.fits else 1


def main(argv=None) -> int:
  """Exit 0 when the run fits, 1 when it does not (with settings that would), 2 on bad input."""
  return common.run("plan", argv, _parser, _body, gin=True, bad_input=(planning.PlanError,))


if __name__ == "__main__":
  sys.exit(main())

"""Report files of an evaluation: results.json, results.md, a PNG per mixture, TensorBoard.

The figure follows the T0 paper's main one: for each dataset, every prompt's accuracy as a dot
(original-task prompts filled, others hollow), the median over original-task prompts as a bar,
and the released T0's reference figure as a star when the dataset is one of T0's held-out sets
AND was evaluated with T0's own prompts (promptsource's): T0's figure on other prompts compares
two different things, so it is left out and the report says which prompts were used.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Dict, List, Optional

from t0jax.evaluate.metrics import ANLI_AVERAGE

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


def _number(value, digits: int = 1) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _json_safe(obj):
  """NaN becomes null: strict JSON readers (and browsers) reject NaN."""
  if isinstance(obj, float) and math.isnan(obj):
    return None
  if isinstance(obj, dict):
    return {k: _json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_json_safe(v) for v in obj]
  return obj


def write_json(results: dict, output_dir: str) -> str:
  path = os.path.join(output_dir, RESULTS_JSON)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(_json_safe(results), f, indent=1, ensure_ascii=False)
  os.replace(tmp, path)
  return path


PROMPT_COLLECTIONS = {
  "promptsource": "T0's own prompts (promptsource)",
  "t0jax": "t0jax's own prompts (the catalogue's, not T0's)",
  "other": "the tasks' own inputs (not catalogue prompts)",
  "mixed": "a mix of prompt collections",
}


def reference(d: dict) -> Optional[float]:
  """T0's reference figure for a dataset entry, only when its prompts were T0's own."""
  if d.get("prompt_collection") != "promptsource":
    return None
  return d.get("t0_reference_mean_accuracy")


def _collections_line(datasets: Dict[str, dict]) -> str:
  found = sorted({d.get("prompt_collection", "other") for d in datasets.values()})
  text = "; ".join(PROMPT_COLLECTIONS.get(c, c) for c in found)
  line = f"Prompts: {text}."
  if any(
    d.get("t0_reference_mean_accuracy") is not None and reference(d) is None
    for d in datasets.values()
  ):
    line += (
      " T0 (mean) is shown only for datasets evaluated with T0's own prompts "
      "(`--promptsource_dir`, or P3): T0's figures were measured on those."
    )
  return line


def _rank_table(datasets: Dict[str, dict]) -> List[str]:
  lines = [
    "| dataset | prompts | median | mean | min | max | T0 (mean) | chance | held out | "
    "per-token median | per-char median | calibrated median | prompted examples | "
    "target not in choices |",
    "|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|",
  ]
  for name, d in datasets.items():
    group = d["original_task"]
    acc = group.get("accuracy", {})
    median = lambda m: _number(group.get(m, {}).get("median"))
    lines.append(
      f"| {name} | {acc.get('num_prompts', len(group.get('prompts', [])))} | "
      f"{_number(acc.get('median'))} | {_number(acc.get('mean'))} | {_number(acc.get('min'))} | "
      f"{_number(acc.get('max'))} | {_number(reference(d))} | "
      f"{_number(d.get('chance'))} | {'yes' if d.get('held_out') else '-'} | "
      f"{median('accuracy_per_token')} | {median('accuracy_per_char')} | "
      f"{median('accuracy_calibrated')} | {group.get('num_examples', '-')} | "
      f"{group.get('num_target_not_in_choices', '-')} |"
    )
  return lines


def _all_prompts_table(datasets: Dict[str, dict]) -> List[str]:
  lines = ["| dataset | prompts | median | mean | min | max |", "|---|---:|---:|---:|---:|---:|"]
  for name, d in datasets.items():
    acc = d["all_prompts"].get("accuracy", {})
    lines.append(
      f"| {name} | {acc.get('num_prompts', '-')} | {_number(acc.get('median'))} | "
      f"{_number(acc.get('mean'))} | {_number(acc.get('min'))} | "
      f"{_number(acc.get('max'))} |"
    )
  return lines


def _generation_table(datasets: Dict[str, dict]) -> List[str]:
  metric_names = sorted(
    {
      m
      for d in datasets.values()
      for m, v in d["original_task"].items()
      if isinstance(v, dict) and "median" in v
    }
  )
  lines = [
    "| dataset | prompts | " + " | ".join(f"{m} median" for m in metric_names) + " |",
    "|---|---:|" + "---:|" * len(metric_names),
  ]
  for name, d in datasets.items():
    group = d["original_task"]
    cells = [_number(group.get(m, {}).get("median")) for m in metric_names]
    lines.append(f"| {name} | {len(group.get('prompts', []))} | " + " | ".join(cells) + " |")
  return lines


def _prompt_table(prompts: Dict[str, dict]) -> List[str]:
  lines = [
    "| dataset | prompt | original task | accuracy | per-token | per-char | calibrated | "
    "examples | excluded |",
    "|---|---|:-:|---:|---:|---:|---:|---:|---:|",
  ]
  for p in sorted(prompts.values(), key=lambda p: (p["dataset"], p["prompt"])):
    if p["kind"] != "rank":
      continue
    m = p["metrics"]
    lines.append(
      f"| {p['dataset']} | {p['prompt']} | {'yes' if p['original_task'] else 'no'} | "
      f"{_number(m.get('accuracy'))} | {_number(m.get('accuracy_per_token'))} | "
      f"{_number(m.get('accuracy_per_char'))} | "
      f"{_number(m.get('accuracy_calibrated'))} | {m.get('num_examples')} | "
      f"{m.get('num_target_not_in_choices')} |"
    )
  return lines


def markdown(results: dict, checkpoint: Optional[str] = None) -> str:
  datasets = results["datasets"]
  rank = {k: v for k, v in datasets.items() if v["kind"] == "rank"}
  generate = {k: v for k, v in datasets.items() if v["kind"] == "generate"}
  timing = results.get("timing", {})
  out = [f"# Zero-shot evaluation: {results['mixture_or_task']}", ""]
  if checkpoint:
    out += [f"Checkpoint: `{checkpoint}`", ""]
  out += [
    f"Split `{results['split']}`; {timing.get('num_examples', '?')} examples scored in "
    f"{_number(timing.get('seconds'))} s. Accuracy in %, by summed log-likelihood of the "
    "choice's tokens with EOS (T0's metric), over each dataset's original-task prompts. "
    "Examples whose target is not among the choices are excluded and counted. T0 (mean) "
    "is the released T0 (11B)'s mean accuracy over prompts (third-party figures); chance is "
    "a uniform guess's accuracy (the mean of 1/number-of-choices); held-out datasets are "
    "evaluated but trained on by no catalogue mixture.",
    "",
    _collections_line(datasets),
    "",
  ]
  if rank:
    out += ["## Rank classification (original-task prompts)", ""] + _rank_table(rank) + [""]
    if ANLI_AVERAGE in rank:
      out += [f"`{ANLI_AVERAGE}` averages each statistic over the three ANLI rounds.", ""]
    out += ["## Rank classification (all prompts)", ""] + _all_prompts_table(rank) + [""]
  if generate:
    out += ["## Generation (original-task prompts)", ""] + _generation_table(generate) + [""]
  if rank:
    out += ["## Per prompt", ""] + _prompt_table(results["prompts"]) + [""]
  return "\n".join(out)


def write_markdown(results: dict, output_dir: str, checkpoint: Optional[str] = None) -> str:
  path = os.path.join(output_dir, RESULTS_MD)
  with open(path, "w", encoding="utf-8") as f:
    f.write(markdown(results, checkpoint))
  return path


def figure_name(mixture: str) -> str:
  return "accuracy_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", mixture) + ".png"


def write_figure(results: dict, output_dir: str) -> Optional[str]:
  """The distribution of accuracy over prompts per dataset (None when nothing was ranked)."""
  prompts = [
    p
    for p in results["prompts"].values()
    if p["kind"] == "rank" and not math.isnan(p["metrics"].get("accuracy", math.nan))
  ]
  if not prompts:
    return None
  import matplotlib

  matplotlib.use("Agg")  # files only: no display needed
  import matplotlib.pyplot as plt

  names = sorted({p["dataset"] for p in prompts})
  from matplotlib.lines import Line2D

  fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * len(names) + 2.5), 4.5))
  for x, name in enumerate(names):
    mine = sorted((p for p in prompts if p["dataset"] == name), key=lambda p: p["prompt"])
    for k, p in enumerate(mine):
      offset = (k - (len(mine) - 1) / 2) * min(0.06, 0.5 / max(1, len(mine)))
      original = p["original_task"]
      ax.scatter(
        x + offset,
        p["metrics"]["accuracy"],
        s=22,
        zorder=3,
        facecolors="tab:blue" if original else "none",
        edgecolors="tab:blue",
      )
    stats = results["datasets"][name]["original_task"].get("accuracy", {})
    if stats.get("num_prompts"):
      ax.hlines(stats["median"], x - 0.3, x + 0.3, colors="black", linewidth=2, zorder=4)
    chance = results["datasets"][name].get("chance")
    if chance is not None:
      ax.hlines(chance, x - 0.4, x + 0.4, colors="grey", linestyles="dashed", linewidth=1, zorder=2)
    figure = reference(results["datasets"][name])
    if figure is not None:
      ax.scatter(x + 0.36, figure, marker="*", s=90, color="tab:red", zorder=5)
  ax.set_xlim(-0.6, len(names) - 0.4)
  ax.set_xticks(range(len(names)))
  ax.set_xticklabels(
    [n + (" (held out)" if results["datasets"][n].get("held_out") else "") for n in names],
    rotation=30,
    ha="right",
    fontsize=8,
  )
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(-2, 102)
  ax.grid(axis="y", alpha=0.3)
  collections = sorted({d.get("prompt_collection", "other") for d in results["datasets"].values()})
  ax.set_title(
    f"{results['mixture_or_task']}: accuracy of each prompt ({', '.join(collections)} prompts)",
    fontsize=10,
  )
  legend = [
    Line2D([], [], marker="o", linestyle="", color="tab:blue", label="original-task prompt"),
    Line2D(
      [],
      [],
      marker="o",
      linestyle="",
      markerfacecolor="none",
      color="tab:blue",
      label="other prompt",
    ),
    Line2D([], [], color="black", linewidth=2, label="median (original-task)"),
    Line2D([], [], color="grey", linestyle="dashed", linewidth=1, label="chance"),
    Line2D(
      [],
      [],
      marker="*",
      linestyle="",
      color="tab:red",
      markersize=9,
      label="T0 11B mean (reference, T0's prompts only)",
    ),
  ]
  ax.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  path = os.path.join(output_dir, figure_name(results["mixture_or_task"]))
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def write_ablation(panels: Dict[str, List[tuple]], dataset: str, output_dir: str) -> str:
  """T0's ablation figure in miniature: the held-out `dataset`'s median accuracy over its
  original-task prompts, one panel per ablation (`panels`: title -> [(x label, results dict of a
  run's `t0jax eval`), ...] in x order), the median of each prompt's accuracy drawn with its
  spread (min to max) and chance. Writes ablation.png and ablation.md; returns the figure's path.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = [
    "| ablation | trained on | median | min | max | chance |",
    "|---|---|---:|---:|---:|---:|",
  ]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
  for ax, (title, points) in zip(axes[0], panels.items()):
    stats = [r["datasets"][dataset]["original_task"]["accuracy"] for _, r in points]
    chance = [r["datasets"][dataset].get("chance") for _, r in points]
    xs = range(len(points))
    medians = [a["median"] for a in stats]
    ax.errorbar(
      xs,
      medians,
      yerr=[
        [m - a["min"] for m, a in zip(medians, stats)],
        [a["max"] - m for m, a in zip(medians, stats)],
      ],
      fmt="o-",
      color="tab:blue",
      capsize=4,
      label="median over prompts (bar: min-max)",
    )
    if chance[0] is not None:
      ax.axhline(chance[0], color="grey", linestyle="dashed", linewidth=1, label="chance")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([label for label, _ in points], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(f"{dataset} (held out) accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    for (label, _), a, c in zip(points, stats, chance):
      rows.append(
        f"| {title} | {label} | {_number(a['median'])} | {_number(a['min'])} | "
        f"{_number(a['max'])} | {_number(c)} |"
      )
  fig.tight_layout()
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "ablation.png")
  fig.savefig(path, dpi=120)
  plt.close(fig)
  table = os.path.join(output_dir, "ablation.md")
  with open(table + ".tmp", "w") as f:
    f.write("\n".join(rows) + "\n")
  os.replace(table + ".tmp", table)
  return path


def _tag(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_./-]+", "_", text).strip("_")


def scalars(results: dict) -> Dict[str, float]:
  """TensorBoard tags -> values: per-dataset statistics and per-prompt figures."""
  out = {}
  for name, d in results["datasets"].items():
    for group in ("original_task", "all_prompts"):
      for metric, stats in d[group].items():
        if isinstance(stats, dict):
          for stat in ("median", "mean", "min", "max"):
            value = stats.get(stat)
            if isinstance(value, (int, float)) and not math.isnan(value):
              out[f"eval/{_tag(name)}/{group}/{metric}_{stat}"] = float(value)
  for task, p in results["prompts"].items():
    for metric, value in p["metrics"].items():
      if (
        not metric.startswith("num_") and isinstance(value, (int, float)) and not math.isnan(value)
      ):
        out[f"eval_prompts/{_tag(task)}/{metric}"] = float(value)
  return out


def write_tensorboard(results: dict, output_dir: str, step: int = 0) -> str:
  from tensorboardX import SummaryWriter

  directory = os.path.join(output_dir, "tensorboard")
  with SummaryWriter(directory) as writer:
    for tag, value in scalars(results).items():
      writer.add_scalar(tag, value, step)
  return directory


def write_all(
  results: dict,
  output_dir: str,
  *,
  checkpoint: Optional[str] = None,
  step: int = 0,
  tensorboard: bool = True,
) -> dict:
  """Every report file; returns {kind: path}."""
  os.makedirs(output_dir, exist_ok=True)
  paths = {
    "json": write_json(results, output_dir),
    "markdown": write_markdown(results, output_dir, checkpoint),
  }
  figure = write_figure(results, output_dir)
  if figure:
    paths["figure"] = figure
  if tensorboard:
    paths["tensorboard"] = write_tensorboard(results, output_dir, step)
  return paths

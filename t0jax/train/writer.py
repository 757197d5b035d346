"""Training metrics: `metrics.jsonl`, TensorBoard event files and a console progress bar.

Only process 0 writes. On resume, records past the restored step are dropped (atomically) so the
file always describes exactly one run.
"""

import json
import math
import os
from typing import Mapping, Optional


class MetricsWriter:
  def __init__(
    self,
    model_dir: str,
    total_steps: int,
    start_step: int = 0,
    enabled: bool = True,
    tensorboard: bool = True,
    progress_bar: bool = True,
  ):
    self.enabled = enabled
    self.path = os.path.join(model_dir, "metrics.jsonl")
    self._tb = self._bar = None
    if not enabled:
      return
    self._truncate_after(start_step)
    self._file = open(self.path, "a")
    if tensorboard:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(model_dir, "tensorboard"), purge_step=start_step + 1)
    if progress_bar:
      from tqdm import tqdm

      self._bar = tqdm(
        total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, desc="train"
      )

  def _truncate_after(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      keep = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(keep)
    os.replace(tmp, self.path)

  def write(self, step: int, metrics: Mapping[str, float], prefix: str = "train") -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    if prefix != "train":
      record = {"step": int(step), **{f"{prefix}/{k}": v for k, v in record.items() if k != "step"}}
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in metrics.items():
        if isinstance(v, (int, float)) and math.isfinite(v):
          self._tb.add_scalar(f"{prefix}/{k}", v, step)

  def progress(self, step: int, postfix: Optional[Mapping[str, float]] = None) -> None:
    if self._bar is not None:
      self._bar.n = step
      if postfix:
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
      self._bar.refresh()

  def close(self) -> None:
    if not self.enabled:
      return
    self._file.close()
    if self._tb is not None:
      self._tb.close()
    if self._bar is not None:
      self._bar.close()


def _plain(v):
  if hasattr(v, "item"):
    v = v.item()
  return v if not isinstance(v, float) or math.isfinite(v) else str(v)


def read_metrics(model_dir: str):
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]

"""Helpers for tests (and for users checking their own catalogue entries offline).

`fixture_data_dir` turns `tasks/fixtures/*.jsonl` into a `T0JAX_DATA_DIR` layout; `write_catalog`
writes a small catalogue (specs + promptsource-format prompt files) into a folder that
`load_catalog` can read.
"""

import json
import os
import uuid
from typing import Iterable, Optional

import yaml

from .spec import Catalog


def fixture_path(fixtures_dir: str, dataset: str, subset: Optional[str]) -> str:
  name = dataset + (f"__{subset}" if subset else "")
  return os.path.join(fixtures_dir, f"{name}.jsonl")


def fixture_data_dir(catalog: Catalog, fixtures_dir: str, out_dir: str) -> list:
  """Copy each dataset's fixture rows into `<out_dir>/<dataset>[/<subset>]/<split>.jsonl` for
  every split it records; returns the datasets (specs) that have a fixture."""
  covered = []
  for spec in catalog.datasets:
    path = fixture_path(fixtures_dir, spec.dataset, spec.subset)
    if not os.path.exists(path):
      continue
    with open(path, encoding="utf-8") as f:
      text = f.read()
    for split in spec.splits:
      target = spec.source.jsonl_path(out_dir, split)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    covered.append(spec)
  return covered


def write_jsonl(path: str, rows: Iterable[dict]) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  return path


def template(
  name: str, jinja: str, answer_choices: Optional[str] = None, original_task: bool = True
) -> dict:
  """A promptsource-style template entry (plain mapping; the loader accepts untagged ones)."""
  return {
    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"t0jax-test/{name}/{jinja}")),
    "name": name,
    "jinja": jinja,
    "answer_choices": answer_choices,
    "reference": "",
    "metadata": {
      "original_task": original_task,
      "choices_in_prompt": False,
      "metrics": ["Accuracy"],
      "languages": ["en"],
    },
  }


def write_catalog(root: str, datasets: list, templates: dict, file_name: str = "test.yaml") -> str:
  """Write `<root>/catalog/<file_name>` with `datasets` (spec dicts) and, for each
  (dataset, subset) key of `templates`, its prompts file (a list of `template(...)` dicts)."""
  os.makedirs(os.path.join(root, "catalog"), exist_ok=True)
  with open(os.path.join(root, "catalog", file_name), "w", encoding="utf-8") as f:
    yaml.safe_dump({"datasets": datasets}, f, sort_keys=False)
  for (dataset, subset), items in templates.items():
    folder = os.path.join(root, "prompts", dataset, *([subset] if subset else []))
    os.makedirs(folder, exist_ok=True)
    body = {"dataset": dataset, "templates": {t["id"]: t for t in items}}
    if subset:
      body["subset"] = subset
    with open(os.path.join(folder, "templates.yaml"), "w", encoding="utf-8") as f:
      yaml.safe_dump(body, f, sort_keys=False)
  return root

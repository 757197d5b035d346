"""promptsource's template tree from its sdist on the package index (`t0jax prompts fetch`).

T0 was trained on promptsource 0.1.0's prompts. That release no longer installs on current
Python, but pip still downloads its source archive (`pip download --no-deps --no-binary :all:
--python-version 3.7`), and the archive holds `promptsource/templates/` as plain files, which is
all t0jax reads. Extraction is checked member by member (the archive is a stranger's) and lands
in place atomically, so an interrupted fetch leaves no half tree behind.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

DEFAULT_VERSION = "0.1.0"
_TEMPLATES = ("promptsource", "templates")


class FetchError(RuntimeError):
  """The sdist could not be downloaded or holds no template tree."""


def default_dir(version: str) -> str:
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "t0jax", f"promptsource-{version}", "templates")


def download_sdist(version: str, workdir: str) -> str:
  """The path of promptsource's sdist for `version`, downloaded by pip into `workdir`."""
  command = [
    sys.executable,
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--no-binary",
    ":all:",
    "--python-version",
    "3.7",
    "--dest",
    workdir,
    f"promptsource=={version}",
  ]
  result = subprocess.run(command, capture_output=True, text=True)
  if result.returncode != 0:
    lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    raise FetchError(
      f"pip could not download promptsource=={version} "
      f"({lines[-1].strip() if lines else f'exit {result.returncode}'}); check "
      f"the version and that the package index is reachable."
    )
  found = glob.glob(os.path.join(workdir, f"promptsource-{version}.tar.gz"))
  if not found:
    raise FetchError(f"pip downloaded no promptsource-{version}.tar.gz into {workdir}.")
  return found[0]


def _template_members(archive: tarfile.TarFile, path: str) -> list:
  """(member, path below templates/) for the regular files of `<top>/promptsource/templates/`."""
  chosen = []
  for member in archive.getmembers():
    parts = member.name.split("/")
    if len(parts) < 4 or tuple(parts[1:3]) != _TEMPLATES or not member.isfile():
      continue
    inner = parts[3:]
    if member.name.startswith("/") or ".." in inner or any(not p for p in inner):
      raise FetchError(f"{path}: refusing the unsafe member path {member.name!r}.")
    chosen.append((member, os.path.join(*inner)))
  return chosen


def extract_templates(archive_path: str, dest: str) -> str:
  """Extract `promptsource/templates/` of the sdist at `archive_path` into `dest` (created;
  it must not exist yet). Returns `dest`."""
  try:
    archive = tarfile.open(archive_path, "r:*")
  except (OSError, tarfile.TarError) as error:
    raise FetchError(f"{archive_path}: not a readable source archive ({error}).") from None
  with archive:
    members = _template_members(archive, archive_path)
    if not any(inner.endswith("templates.yaml") for _, inner in members):
      raise FetchError(
        f"{archive_path}: holds no promptsource/templates/**/templates.yaml; "
        f"is it promptsource's sdist?"
      )
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".templates-", dir=parent)
    try:
      for member, inner in members:
        target = os.path.join(staging, inner)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.extractfile(member) as src, open(target, "wb") as out:
          shutil.copyfileobj(src, out)
      os.rename(staging, dest)  # atomic: dest appears whole or not at all
    except BaseException:
      shutil.rmtree(staging, ignore_errors=True)
      raise
  return dest


def fetch(version: str = DEFAULT_VERSION, dest: str | None = None) -> str:
  """promptsource `version`'s template tree in `dest` (default: the user's cache), downloading
  it unless `dest` already holds it. Returns the tree's path."""
  dest = os.path.abspath(os.path.expanduser(dest or default_dir(version)))
  if os.path.isdir(dest) and glob.glob(
    os.path.join(dest, "*", "**", "templates.yaml"), recursive=True
  ):
    return dest
  if os.path.exists(dest) and os.listdir(dest):
    raise FetchError(
      f"--dir {dest} exists and is not a promptsource template tree; remove it "
      f"or choose another folder."
    )
  if os.path.isdir(dest):
    os.rmdir(dest)  # an empty folder the user made: the atomic rename needs it absent
  with tempfile.TemporaryDirectory(prefix="t0jax-promptsource-") as workdir:
    return extract_templates(download_sdist(version, workdir), dest)

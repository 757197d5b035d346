"""This host's training batches, made by a child process.

The SeqIO pipeline (Python prompt rendering, TensorFlow tokenisation and packing, a few hundred
tf.data threads for a mixture) runs in its own process, and the training process only receives
finished numpy batches. Sharing a process with that pipeline slowed XLA's CPU step by 25-40% on
the 2-core machine this project is measured on, although the pipeline itself needs only ~20 ms of
CPU per demo batch; in a separate process the step runs at its own speed
(bench/train_demo.py measures the whole loop).

The child makes exactly the batches `TrainData.host_batches` makes in-process (it runs that same
generator), so resumed runs, sharded runs and the data position are unchanged. Batches travel
over a pipe as raw array bytes with a JSON header (nothing is unpickled), a reader thread keeps a
few of them ready, and the child exits when the parent goes away (its next write fails).

The child also samples the mixture for the truncation check (`check_truncation`), for the same
reason: after running TensorFlow pipelines, the training process stayed ~35% slower.

The child registers the catalogue (`t0jax.catalog`) and imports every module the gin files
import (`import my_project.tasks`); a mixture it still cannot find (tasks registered only in the
parent, e.g. in a script's `__main__`) is read in-process instead, with a warning.

  python -m t0jax.train.data_process FD     (started by `ProcessBatches`; the spec arrives on stdin)
"""

import dataclasses
import json
import logging
import os
import queue
import struct
import subprocess
import sys
import threading
import traceback
from typing import Dict, List

import numpy as np

log = logging.getLogger(__name__)

_LEN = struct.Struct("<Q")


class UnregisteredMixture(Exception):
  """The child process cannot find the mixture: it was registered in the parent only."""


# --- wire format: [8-byte length][4-byte header length][JSON header][array bytes] -------------


def _write_message(out, header: dict, arrays: Dict[str, np.ndarray] = None) -> None:
  arrays = arrays or {}
  header = dict(header, arrays=[[k, str(v.dtype), list(v.shape)] for k, v in arrays.items()])
  head = json.dumps(header).encode()
  body = b"".join(np.ascontiguousarray(v).tobytes() for v in arrays.values())
  out.write(_LEN.pack(4 + len(head) + len(body)) + struct.pack("<I", len(head)) + head + body)
  out.flush()


def _read_exact(stream, n: int) -> bytes:
  chunks, left = [], n
  while left:
    chunk = stream.read(left)
    if not chunk:
      return b""
    chunks.append(chunk)
    left -= len(chunk)
  return b"".join(chunks)


def _read_message(stream):
  """(header, arrays), or None at the end of the stream."""
  prefix = _read_exact(stream, _LEN.size)
  if not prefix:
    return None
  payload = _read_exact(stream, _LEN.unpack(prefix)[0])
  if not payload:
    return None
  (head_len,) = struct.unpack_from("<I", payload)
  header = json.loads(payload[4 : 4 + head_len])
  arrays, offset = {}, 4 + head_len
  for name, dtype, shape in header.pop("arrays"):
    count = int(np.prod(shape, dtype=np.int64))
    value = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
    arrays[name] = value
    offset += value.nbytes
  return header, arrays


# --- parent side ---------------------------------------------------------------------------------


def _gin_imported_modules() -> List[str]:
  try:
    import gin

    return sorted({statement.module for statement in gin.config._IMPORTS})
  except Exception:  # noqa: BLE001 - gin absent or its internals changed: the catalogue only
    return []


def _error_from(header: dict) -> Exception:
  """The child's exception as the parent raises it: the same class for the errors the trainer
  reports to users, a RuntimeError naming the class otherwise."""
  from t0jax.data.readers import DataUnavailableError
  from t0jax.train.input_pipeline import DataShareError

  kinds = {
    "DataShareError": DataShareError,
    "DataUnavailableError": DataUnavailableError,
    "ValueError": ValueError,
    "FileNotFoundError": FileNotFoundError,
    "PermissionError": PermissionError,
    "RuntimeError": RuntimeError,
  }
  kind, message = header["type"], header["message"]
  if kind == "UnregisteredMixture":
    return UnregisteredMixture(message)
  if kind in kinds:
    return kinds[kind](message)
  return RuntimeError(f"The data process failed with {kind}: {message}\n{header['traceback']}")


def _seqio_flags() -> dict:
  """SeqIO's process-wide settings that --tfds_data_dir and --seqio_additional_cache_dirs set."""
  seqio = sys.modules.get("seqio")
  if seqio is None:
    return {}
  return {
    "cache_dirs": list(seqio.get_global_cache_dirs()),
    "tfds_data_dir": getattr(seqio.utils, "_TFDS_DATA_DIR_OVERRIDE", None),
  }


class ProcessBatches:
  """Iterator over this host's batches from step `start_step` on, made by a child process."""

  def __init__(
    self,
    data,
    start_step: int = 0,
    slice_index: int = 0,
    num_slices: int = 1,
    prefetch: int = 4,
    truncation_check_examples: int = 0,
  ):
    from t0jax.data import settings

    spec = {
      "data": dataclasses.asdict(data),
      "start_step": int(start_step),
      "slice_index": int(slice_index),
      "num_slices": int(num_slices),
      "truncation_check_examples": int(truncation_check_examples),
      "modules": _gin_imported_modules(),
      "settings": settings.snapshot(),
      "seqio": _seqio_flags(),
    }
    spec["data"]["task_feature_lengths"] = dict(spec["data"]["task_feature_lengths"])
    read_fd, write_fd = os.pipe()
    try:
      self._proc = subprocess.Popen(
        [sys.executable, "-m", "t0jax.train.data_process", str(write_fd)],
        stdin=subprocess.PIPE,
        pass_fds=(write_fd,),
        env={
          **os.environ,
          "PYTHONPATH": os.pathsep.join(
            p for p in [os.environ.get("PYTHONPATH", "")] + sys.path if p
          ),
        },
      )
    finally:
      os.close(write_fd)
    self._stream = os.fdopen(read_fd, "rb")
    self._proc.stdin.write(json.dumps(spec).encode())
    self._proc.stdin.close()
    self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
    self._closed = False
    self._reader = threading.Thread(target=self._read, name="t0jax-data-reader", daemon=True)
    self._reader.start()

  def _read(self):
    try:
      while not self._closed:
        message = _read_message(self._stream)
        if message is None:
          self._queue.put(("end", None))
          return
        header, arrays = message
        self._queue.put(("batch", arrays) if header["kind"] == "batch" else ("error", header))
        if header["kind"] != "batch":
          return
    except Exception as e:  # noqa: BLE001 - reported to the consumer
      if not self._closed:
        self._queue.put(("end", e))

  def __iter__(self):
    return self

  def __next__(self) -> Dict[str, np.ndarray]:
    if self._closed:
      raise StopIteration
    kind, value = self._queue.get()
    if kind == "batch":
      return value
    self.close()
    if kind == "error":
      raise _error_from(value)
    code = self._proc.returncode
    raise RuntimeError(
      f"The data process ended without a batch or an error (exit code {code}"
      f"{', ' + repr(value) if value else ''}); its stderr above says why."
    )

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    if self._proc.poll() is None:
      self._proc.terminate()
      try:
        self._proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait()
    self._stream.close()
    while True:  # let a reader blocked on a full queue finish
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break


# --- child side ----------------------------------------------------------------------------------


def _child(out) -> int:
  spec = json.loads(sys.stdin.read())
  try:
    from t0jax.data import settings

    settings.apply(spec["settings"])
    from t0jax.data.tf_setup import import_tensorflow

    import_tensorflow()  # quietly, before seqio or the catalogue import it
    if spec.get("seqio"):
      import seqio

      seqio.add_global_cache_dirs(spec["seqio"]["cache_dirs"])
      if spec["seqio"]["tfds_data_dir"]:
        seqio.set_tfds_data_dir_override(spec["seqio"]["tfds_data_dir"])
    import importlib
    import t0jax.catalog  # noqa: F401 - registers the catalogue

    for module in spec["modules"]:
      importlib.import_module(module)
    from t0jax.catalog import get_task_or_mixture
    from t0jax.train.input_pipeline import TrainData

    data = TrainData(**spec["data"])
    try:
      get_task_or_mixture(data.mixture_or_task_name)
    except KeyError as e:
      raise UnregisteredMixture(str(e)) from e
    batches = data.host_batches(spec["start_step"], spec["slice_index"], spec["num_slices"])
    _write_message(out, {"kind": "batch"}, next(batches))
    if spec["truncation_check_examples"]:  # while the parent initialises and compiles
      from t0jax.train.input_pipeline import check_truncation

      check_truncation(
        data.mixture_or_task_name,
        data.task_feature_lengths,
        data.split,
        spec["truncation_check_examples"],
        use_cached=data.use_cached,
        cache_dirs=data.cache_dirs,
      )
    for batch in batches:
      _write_message(out, {"kind": "batch"}, batch)
  except (BrokenPipeError, KeyboardInterrupt):
    return 0  # the parent is gone or stopped us
  except BaseException as e:  # noqa: BLE001 - every failure goes to the parent
    try:
      _write_message(
        out,
        {
          "kind": "error",
          "type": type(e).__name__,
          "message": str(e),
          "traceback": traceback.format_exc(),
        },
      )
    except BrokenPipeError:
      pass
    return 1
  return 0


def main(argv) -> int:
  import signal

  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
  signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the parent closes us: no cleanup due
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
  with os.fdopen(int(argv[0]), "wb") as out:
    code = _child(out)
  sys.stdout.flush()
  os._exit(code)  # tf.data's threads would otherwise hold the interpreter at exit


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))

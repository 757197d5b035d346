"""How long `import t0jax.catalog` takes, against the seqio/TensorFlow import it stands on.

Registering the whole catalogue (every prompt task and mixture) reads YAML only; the peer is the
cost a user pays anyway, `import seqio` (which imports TensorFlow). Each side runs in a fresh
interpreter, several times; the median is reported.

    python bench/import_time.py [--repeats 5]
"""

import argparse
import json
import statistics
import subprocess
import sys

_PROBE = """
import json, time
t0c, t0 = time.process_time(), time.perf_counter()
import seqio
t1c, t1 = time.process_time(), time.perf_counter()
{extra}
t2c, t2 = time.process_time(), time.perf_counter()
print(json.dumps({{"seqio_s": t1 - t0, "seqio_cpu_s": t1c - t0c, "extra_s": t2 - t1,
                  "extra_cpu_s": t2c - t1c}}))
"""


def _run(extra: str) -> dict:
  out = subprocess.run(
    [sys.executable, "-c", _PROBE.format(extra=extra)],
    capture_output=True,
    text=True,
    check=True,
    env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""},
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  runs = [_run("import t0jax.catalog") for _ in range(args.repeats)]
  seqio_s = statistics.median(r["seqio_s"] for r in runs)
  catalog_s = statistics.median(r["extra_s"] for r in runs)
  cpu = statistics.median(r["seqio_cpu_s"] + r["extra_cpu_s"] for r in runs)
  print(f"import seqio (TensorFlow included): {seqio_s:.2f} s")
  print(f"import t0jax.catalog on top of it:  {catalog_s:.2f} s (whole import {cpu:.2f} CPU-s)")
  print(f"ratio catalogue registration / seqio import: {catalog_s / seqio_s:.2f}x")


if __name__ == "__main__":
  main()

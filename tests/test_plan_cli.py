"""`t0jax plan`: reads the experiment's gin files, prints memory per device, FLOPs and step time,
says whether the run fits (exit 0 / 1), proposes settings that do fit, and names bad input
(exit 2)."""

import json
import re
import shlex

import pytest

from t0jax.cli import main

T0_3B = "--gin_file=gin/experiments/t0_3b.gin"
T0_11B = "--gin_file=gin/experiments/t0_11b.gin"


def _run(capsys, *argv):
  code = main(["plan", *argv])
  out = capsys.readouterr()
  return code, out.out, out.err


def test_a_run_that_fits_prints_each_memory_part_flops_and_time(capsys):
  code, out, _ = _run(capsys, T0_3B, "--topology", "v3-512")
  assert code == 0, out
  for label in (
    "parameters (float32)",
    "optimizer state",
    "gradients (float32)",
    "activations",
    "input batch",
    "total",
    "usable (HBM less margin)",
    "model FLOPs per step",
    "with recomputation",
    "step time",
    "12,200 steps",
  ):
    assert label in out
  assert "512 devices (one per TensorCore), 64 host(s) x 8; 16.0 GiB HBM" in out
  assert "data 64 x model 8" in out and "16 sequence(s) per device" in out
  assert re.search(r"fits: yes \([\d.]+ GiB to spare\)", out)


def test_json_output_parts_add_up_to_the_total(capsys):
  code, out, _ = _run(capsys, T0_3B, "--topology", "v3-512", "--json")
  plan = json.loads(out)
  assert code == 0 and plan["fits"] is True
  mem = plan["memory_bytes_per_device"]
  assert mem["total"] == pytest.approx(sum(v for k, v in mem.items() if k != "total"))
  assert plan["topology"]["num_devices"] == 512 and plan["rows_per_device"] == 16
  assert plan["run_hours"] == pytest.approx(plan["step_seconds"] * 12200 / 3600)


def test_gin_overrides_and_remat_flag_change_the_plan(capsys):
  _, base, _ = _run(capsys, T0_3B, "--topology", "v3-512", "--json")
  _, full, _ = _run(capsys, T0_3B, "--topology", "v3-512", "--json", "--remat_policy", "full")
  _, micro, _ = _run(capsys, T0_3B, "--topology", "v3-512", "--json", "--gin.NUM_MICROBATCHES=4")
  base, full, micro = json.loads(base), json.loads(full), json.loads(micro)
  act = lambda p: p["memory_bytes_per_device"]["activations"]
  assert act(full) < act(base) and full["step_seconds"] > base["step_seconds"]
  assert micro["rows_per_device"] == 4 and act(micro) < act(base)


def test_a_run_that_does_not_fit_exits_1_with_settings_that_do(capsys):
  code, out, _ = _run(capsys, T0_11B, "--topology", "v3-512")
  assert code == 1
  assert re.search(r"fits: NO \([\d.]+ GiB short\)", out)
  suggestions = re.findall(r"s/step: (.+)$", out, flags=re.M)
  assert suggestions
  # Fed back, the first suggestion fits.
  code, again, _ = _run(capsys, T0_11B, "--topology", "v3-512", *shlex.split(suggestions[0]))
  assert code == 0, again


def test_gpu_plans_mention_jaxs_memory_preallocation(capsys):
  _, out, _ = _run(capsys, T0_3B, "--topology", "8xA100-40GB")
  assert "XLA_PYTHON_CLIENT_MEM_FRACTION" in out


@pytest.mark.parametrize(
  "argv, message",
  [
    ((T0_3B, "--topology", "v3-500"), r"--topology v3-500: v3 slices are named by TensorCores"),
    ((T0_3B, "--topology", "12xH100"), r"NUM_PARTITIONS=8 must divide the 12 devices"),
    ((T0_3B, "--topology", "v3-512", "--mfu", "0"), r"--mfu 0.0: give a fraction"),
    (
      (T0_3B, "--topology", "v3-512", "--gin.NUM_PARTITONS=4"),
      r"NUM_PARTITONS.*Closest: "
      r"NUM_PARTITIONS",
    ),
    (
      ("--gin_file=gin/experiments/t0_3x.gin", "--topology", "v3-512"),
      r"gin file "
      r"'gin/experiments/t0_3x.gin' not found.*Did you mean: gin/experiments/t0_3b.gin",
    ),
  ],
)
def test_bad_input_exits_2_naming_the_culprit(capsys, argv, message):
  code, _, err = _run(capsys, *argv)
  assert code == 2
  assert re.search(message, err), err


def test_optimizer_gin_bindings_reach_the_optimizer_state_estimate(capsys):
  _, factored, _ = _run(capsys, T0_3B, "--topology", "v3-512", "--json")
  _, unfactored, _ = _run(
    capsys,
    T0_3B,
    "--topology",
    "v3-512",
    "--json",
    "--gin.t0jax.optim.adafactor.min_dim_size_to_factor=1000000",
  )
  f = json.loads(factored)["memory_bytes_per_device"]
  u = json.loads(unfactored)["memory_bytes_per_device"]
  assert f["optimizer"] < 0.5 * f["params"]  # Adafactor's factored second moments
  assert u["optimizer"] == pytest.approx(u["params"], rel=1e-3)  # one full moment per parameter

"""Test-wide environment: 8 fake CPU devices for sharding tests, no GPU for TensorFlow.

Set before anything imports JAX or TensorFlow.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests never download: fail fast instead of waiting on a network that is not there.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


def pytest_addoption(parser):
  parser.addoption(
    "--runslow",
    action="store_true",
    default=False,
    help="also run tests marked slow (benchmark end-to-end runs, long multi-process "
    "scenarios); T0JAX_RUN_SLOW=1 does the same",
  )


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: minutes-long; skipped unless --runslow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow") or os.environ.get("T0JAX_RUN_SLOW") == "1":
    return
  skip = pytest.mark.skip(reason="slow: run with --runslow (or T0JAX_RUN_SLOW=1)")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)

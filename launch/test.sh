#!/usr/bin/env bash
# Install t0jax with its test extras into .venv (created if missing) and run the test suite.
# Extra arguments go to pytest, e.g. `bash launch/test.sh -k parity`.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" test
exec python -m pytest -q -n 2 "$@" tests

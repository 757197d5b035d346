"""`python -m t0jax.train`: the same as `t0jax train`."""

import sys

from t0jax.cli.train import main

sys.exit(main())

import sys

from t0jax.cli import main

sys.exit(main())

"""t0jax: multitask prompted training of T5 encoder-decoders in JAX."""

__version__ = "0.1.0"

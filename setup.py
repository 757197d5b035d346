"""t0jax: multitask prompted training (T0) of T5 encoder-decoders in JAX."""

from setuptools import find_packages, setup

setup(
  name="t0jax",
  version="0.1.0",
  description="Multitask prompted training (the T0 recipe) for T5 encoder-decoders in JAX, "
  "with SeqIO tasks, gin configs and T5X-style partitioning.",
  long_description=open("README.md").read(),
  long_description_content_type="text/markdown",
  python_requires=">=3.10,<3.13",
  # The top-level `tasks/` catalogue (datasets, prompts, mixtures) ships inside the package as
  # `t0jax.catalog`, so `import t0jax.catalog` works from a checkout and from an install.
  packages=find_packages(include=["t0jax", "t0jax.*"])
  + ["t0jax.catalog"]
  + ["t0jax.catalog." + p for p in find_packages("tasks")]
  + ["t0jax.gin"],
  # `gin/` ships as the data folder `t0jax/gin` (no __init__.py: `import gin` stays gin-config),
  # so `gin/experiments/demo.gin` and the files' own `include 'gin/...'` lines resolve against
  # the package folder exactly as they do against a checkout.
  package_dir={"t0jax.catalog": "tasks", "t0jax.gin": "gin"},
  # Data in sub-folders (some named like `3.0.0`, which no package name can list) comes from
  # these patterns alone; include_package_data would also treat each folder as a package.
  package_data={
    "t0jax.catalog": ["**/*.yaml", "**/*.model", "**/*.json", "**/*.jsonl"],
    "t0jax.gin": ["**/*.gin"],
  },
  include_package_data=False,
  install_requires=[
    "jax>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "seqio==0.0.20",
    "tensorflow>=2.21,<2.22",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets>=4.9.10,<5",
    "sentencepiece>=0.2.0,<0.3",
    "gin-config>=0.5.0,<0.6",
    "jinja2>=3.1,<4",
    "pyyaml>=6,<7",
    "safetensors>=0.6,<1",
    "numpy>=2,<3",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "tensorboardX>=2.6",
    # P3's current layout is parquet (t0jax/data/p3.py); imported only when P3 is read.
    "pyarrow>=15,<27",
  ],
  extras_require={
    # torch is pinned exactly: an unpinned torch pulls several GB of CUDA packages.
    "test": [
      "pytest>=8",
      "pytest-xdist>=3.5",
      "torch==2.13.0",
      "transformers>=5.0,<6",
      "ruff==0.17.6",
    ],
    "hf": ["datasets>=3"],
    "tpu": ["jax[tpu]>=0.10.2,<0.11"],
    "cuda": ["jax[cuda12]>=0.10.2,<0.11"],
  },
  entry_points={"console_scripts": ["t0jax=t0jax.cli:main"]},
)

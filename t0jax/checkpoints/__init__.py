"""Checkpoint formats t0jax reads and writes (Hugging Face safetensors for now)."""
from t0jax.checkpoints.hf import (CheckpointError, config_from_hf, config_to_hf,
                                  load_hf_checkpoint, save_hf_checkpoint)

__all__ = ["CheckpointError", "config_from_hf", "config_to_hf", "load_hf_checkpoint",
           "save_hf_checkpoint"]

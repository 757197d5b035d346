"""Prompt templates in the promptsource format: loading (`templates`) and rendering (`render`).

Importing this package pulls in only PyYAML and Jinja (no JAX, no TensorFlow).
"""

from t0jax.prompts.errors import (
  MissingFieldError,
  ReservedFieldError,
  TemplateError,
  TemplateFormatError,
  TemplateNotFoundError,
  TemplateRenderError,
  TemplateSecurityError,
  TemplateSyntaxError,
)
from t0jax.prompts.render import (
  PIPE_PLACEHOLDER,
  Rendered,
  apply_or_skip,
  apply_parts,
  prepare_example,
  skip_reason,
)
from t0jax.prompts.templates import (
  DatasetTemplates,
  Template,
  TemplateMetadata,
  load_templates,
  load_templates_dir,
  load_templates_file,
)

__all__ = [
  "DatasetTemplates",
  "MissingFieldError",
  "PIPE_PLACEHOLDER",
  "Rendered",
  "ReservedFieldError",
  "Template",
  "TemplateError",
  "TemplateFormatError",
  "TemplateMetadata",
  "TemplateNotFoundError",
  "TemplateRenderError",
  "TemplateSecurityError",
  "TemplateSyntaxError",
  "apply_or_skip",
  "apply_parts",
  "load_templates",
  "load_templates_dir",
  "load_templates_file",
  "prepare_example",
  "skip_reason",
]

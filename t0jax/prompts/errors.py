"""Errors raised while loading or applying prompt templates.

Every message names the culprit (file, template name and id, field) and says what to do, so a
user fixing a templates.yaml never has to read a traceback.
"""


class TemplateError(ValueError):
  """Base class: a prompt template (or its file, or the example given to it) is unusable."""


class TemplateFormatError(TemplateError):
  """A templates.yaml file is not in the promptsource format."""


class TemplateSyntaxError(TemplateError):
  """A template's Jinja source does not parse; raised when the file is loaded."""


class TemplateNotFoundError(TemplateError):
  """No template (or no templates file) by the requested name."""


class TemplateRenderError(TemplateError):
  """A template failed while rendering an example, for a reason other than a missing field."""


class TemplateSecurityError(TemplateRenderError):
  """A template tried something Jinja's sandbox forbids (attribute escapes and the like)."""


class ReservedFieldError(TemplateRenderError):
  """The example has a field whose name the template engine reserves (`answer_choices`)."""


class MissingFieldError(TemplateError):
  """A template used a field (or key, or list element) that the example does not have.

  Callers that build datasets catch this, count it under `skip_reason(error)`, and skip the
  example for this template; `template_name` and `field` say which template and what was missing.
  """

  def __init__(self, template_name: str, field: str, message: str):
    super().__init__(message)
    self.template_name = template_name
    self.field = field

  def __reduce__(self):
    # The default reduce would call __init__ with only the message; keep all three.
    return (type(self), (self.template_name, self.field, str(self)))

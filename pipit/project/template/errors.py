"""The template language's two errors: one in a template, found when it is built, and one
in a request, found when it is rendered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipit.project.model import ProjectError


class TemplateError(ProjectError):
    """A problem in the template itself, found when it is built: names file and line."""


class RenderError(ValueError):
    """A problem with a request (a missing or malformed parameter, an error() the template
    raises, a column() value that is no column). The message is for the API caller."""

    def __init__(self, message: str, *, status: int = 400, body: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        """HTTP status: 400 unless error()/custom_error() chose another."""
        self.body = dict(body) if body is not None else {"error": message}
        """The JSON body to answer with: custom_error()'s dict, else {"error": message}."""

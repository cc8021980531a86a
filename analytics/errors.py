"""Errors raised by analytics, all :class:`zhizao.errors.ZhizaoError` subclasses.

``DataError`` names the input and what is wrong with it (a CSV column, a row, a matrix shape);
``UsageError`` (and ``UnknownScope``) when the command line names what does not exist;
``ModelMismatch`` is raised when a stored model cannot be used with this installation or this data.
"""

from __future__ import annotations

from zhizao.errors import ZhizaoError


class DataError(ZhizaoError):
    """Input data is unusable: ``where`` names the file/column/row, ``message`` says why."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class ModelMismatch(ZhizaoError):
    """A stored model does not match this installation (library versions) or the data (features)."""


class RegistryError(ZhizaoError):
    """A model registry operation failed (unknown scope or version, nothing to roll back to...)."""


class UsageError(DataError):
    """The command line names something that does not exist or is not of the form expected (a
    scope, a version): the CLIs exit 2 whatever ``where`` is (a positional argument too)."""


class UnknownScope(UsageError):
    """No machine (or model) under the asset prefix or scope asked for (``where`` is the option or
    parameter that named it). The message lists what is known."""

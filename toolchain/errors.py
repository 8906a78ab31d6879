"""The one user-facing error type.

Anything the user can fix (a bad path, an unknown variant, a missing dependency)
raises :class:`ToolchainError`; the CLI entry point prints it as one line and
exits non-zero. Everything else is a bug and keeps its traceback.
"""


class ToolchainError(Exception):
    """An error caused by the user's input or environment, reported in one line."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")

    def one_line(self) -> str:
        text = self.message if self.hint is None else f"{self.message}; {self.hint}"
        return " ".join(text.split())


class MissingDependencyError(ToolchainError):
    """An optional dependency (TensorRT, CUDA, a network) is not available."""

    exit_code = 3

"""The one error the source transformer raises for code it will not differentiate."""


class TransformError(Exception):
    """An unsupported construct: carries the file, the line and the construct's name."""

    def __init__(self, message, *, filename="<unknown>", lineno=None, construct=None):
        self.filename = filename
        self.lineno = lineno
        self.construct = construct
        self.message = message
        where = f"{filename}:{lineno}" if lineno is not None else filename
        what = f" [{construct}]" if construct else ""
        super().__init__(f"{where}: {message}{what}")


class JitError(TransformError):
    """`jit=True` and Numba cannot compile the emitted code: names the user's line and the fix."""

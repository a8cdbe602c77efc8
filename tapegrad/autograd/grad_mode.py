"""Grad mode: whether operations record graph nodes. Thread-local, as in PyTorch."""
import functools
import threading

class _State(threading.local):
    # a class default: a thread that never switched grad mode reads it without the AttributeError
    # getattr(local, name, default) raises and swallows (300 against 45 ns, on every eager op)
    enabled = True


_state = _State()


def is_grad_enabled():
    """Whether operations record the graph in this thread (no_grad and friends switch it).

    Returns:
        A bool.

    Example:
        >>> import tapegrad as torch
        >>> with torch.no_grad():
        ...     torch.is_grad_enabled()
        False
    """
    return _state.enabled


def _set_enabled(mode):
    _state.enabled = bool(mode)


class _GradModeContext:
    """Base of no_grad / enable_grad / set_grad_enabled: a context manager and a decorator."""

    mode = True

    def __enter__(self):
        self._previous = is_grad_enabled()
        _set_enabled(self.mode)

    def __exit__(self, *exc):
        _set_enabled(self._previous)
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self._clone():
                return func(*args, **kwargs)
        return wrapper

    def _clone(self):
        return type(self)()


class no_grad(_GradModeContext):
    """Operations inside record no graph (a context manager, or a decorator of a function).

    Returns:
        The context manager.

    Example:
        >>> import tapegrad as torch
        >>> x = torch.tensor([1.0], requires_grad=True)
        >>> with torch.no_grad():
        ...     print((x * 2).requires_grad)
        False
    """
    mode = False


class enable_grad(_GradModeContext):
    """Operations inside record the graph, even within no_grad (a context manager or a decorator).

    Returns:
        The context manager.

    Example:
        >>> import tapegrad as torch
        >>> x = torch.tensor([1.0], requires_grad=True)
        >>> with torch.no_grad(), torch.enable_grad():
        ...     print((x * 2).requires_grad)
        True
    """
    mode = True


class set_grad_enabled(_GradModeContext):
    """`set_grad_enabled(False)` switches at once (like PyTorch) and restores on exit when used in `with`.

    Args:
        mode: True to record graphs, False not to.

    Returns:
        The context manager.

    Example:
        >>> import tapegrad as torch
        >>> x = torch.tensor([1.0], requires_grad=True)
        >>> with torch.set_grad_enabled(False):
        ...     print((x * 2).requires_grad)
        False
    """

    def __init__(self, mode):
        self.mode = bool(mode)
        self._previous = is_grad_enabled()
        _set_enabled(self.mode)

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        _set_enabled(self._previous)
        return False

    def __call__(self, func):
        _set_enabled(self._previous)  # as a decorator it only acts while func runs
        return super().__call__(func)

    def _clone(self):
        return set_grad_enabled(self.mode)

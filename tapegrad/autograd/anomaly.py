"""detect_anomaly: name the operation whose backward produced NaN."""
import threading

class _State(threading.local):
    enabled = False  # a class default: no swallowed AttributeError per backward (see grad_mode)


_state = _State()


def anomaly_enabled():
    return _state.enabled


class detect_anomaly:
    """Context manager: during backward, a NaN gradient raises an error naming the node.

    Args:
        check_nan: raise on NaN gradients (False only records forward traces).

    Returns:
        The context manager.

    Example:
        >>> import tapegrad as torch
        >>> x = torch.tensor([-1.0], requires_grad=True)
        >>> with torch.autograd.detect_anomaly():
        ...     x.sqrt().sum().backward()
        Traceback (most recent call last):
        RuntimeError: Function 'SqrtBackward0' returned nan values in its 0th output.
    """

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        self._previous = anomaly_enabled()
        _state.enabled = self.check_nan

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False

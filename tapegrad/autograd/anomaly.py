"""detect_anomaly: name the operation whose backward produced NaN."""
import threading

_state = threading.local()


def anomaly_enabled():
    return getattr(_state, "enabled", False)


class detect_anomaly:
    """Context manager: during backward, a NaN gradient raises an error naming the node."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        self._previous = anomaly_enabled()
        _state.enabled = self.check_nan

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False

"""torch.autograd.profiler: time each eager operation while the profiler is on.

While a `profile` is active, every operation on Tensors (each registry primitive bound by the
eager face) is timed; `key_averages().table()` prints PyTorch's columns. Names are PyTorch's
`aten::` spelling of the primitive (aten::mul, aten::div, ...). User ranges come from
`record_function`.
"""
import collections
import threading
import time

from . import graph

_active = []   # the profiles recording now (the innermost last)
_lock = threading.Lock()


class FunctionEvent:
    __slots__ = ("name", "cpu_time_total", "self_cpu_time_total", "count", "input_shapes")

    def __init__(self, name, total_us, self_us, input_shapes=None):
        self.name, self.cpu_time_total, self.self_cpu_time_total = name, total_us, self_us
        self.count = 1
        self.input_shapes = input_shapes

    key = property(lambda self: self.name)

    @property
    def cpu_time(self):
        return self.cpu_time_total / max(self.count, 1)

    def __repr__(self):
        return (f"<FunctionEvent name={self.name} self_cpu_time_total={self.self_cpu_time_total:.3f}"
                f"us cpu_time_total={self.cpu_time_total:.3f}us count={self.count}>")


def _format_us(us):
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


class EventList(list):
    def key_averages(self, group_by_input_shape=False):
        groups = collections.OrderedDict()
        for e in self:
            key = (e.name, str(e.input_shapes) if group_by_input_shape else None)
            g = groups.get(key)
            if g is None:
                g = groups[key] = FunctionEvent(e.name, 0.0, 0.0, e.input_shapes)
                g.count = 0
            g.cpu_time_total += e.cpu_time_total
            g.self_cpu_time_total += e.self_cpu_time_total
            g.count += e.count
        return EventList(groups.values())

    @property
    def self_cpu_time_total(self):
        return sum(e.self_cpu_time_total for e in self)

    def table(self, sort_by=None, row_limit=100, header=None, **kwargs):
        rows = list(self)
        if sort_by:
            key = sort_by.replace("self_cpu_time_total", "self_cpu_time_total")
            if key in ("cpu_time_total", "self_cpu_time_total", "count", "cpu_time"):
                rows.sort(key=lambda e: getattr(e, key), reverse=True)
        rows = rows[:row_limit] if row_limit and row_limit > 0 else rows
        total = self.self_cpu_time_total or 1.0
        head = ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg",
                "# of Calls"]
        # PyTorch's layout: right-aligned cells, two spaces after each
        width = max([len(h) for h in head[:1]] + [len(e.name) for e in rows]) + 4
        cols = [width] + [12] * 6
        line = "".join("-" * w + "  " for w in cols)
        fmt = lambda cells: "".join(str(c).rjust(w) + "  " for c, w in zip(cells, cols))  # noqa
        out = [line, fmt(head), line]
        for e in rows:
            out.append(fmt([e.name, f"{100 * e.self_cpu_time_total / total:.2f}%",
                            _format_us(e.self_cpu_time_total),
                            f"{100 * e.cpu_time_total / total:.2f}%",
                            _format_us(e.cpu_time_total), _format_us(e.cpu_time), e.count]))
        out.append(line)
        out.append(f"Self CPU time total: {_format_us(self.self_cpu_time_total)}")
        return "\n".join(out) + "\n"

    def total_average(self):
        e = FunctionEvent("Total", sum(x.cpu_time_total for x in self), self.self_cpu_time_total)
        e.count = sum(x.count for x in self)
        return e


_stack = threading.local()


def _record(name, seconds_total, shapes):
    """Append one event to every active profile; nested time is taken off the parent's self."""
    us = seconds_total * 1e6
    frames = getattr(_stack, "frames", None)
    child = frames.pop() if frames else 0.0
    if frames:
        frames[-1] += us
    for prof in _active:
        prof._events.append(FunctionEvent(name, us, us - child,
                                          shapes if prof.record_shapes else None))


def _enter_frame():
    frames = getattr(_stack, "frames", None)
    if frames is None:
        frames = _stack.frames = []
    frames.append(0.0)


def _timed_bind(original):
    def _bind(cls, prim, args, params, name=None):
        _enter_frame()
        start = time.perf_counter()
        try:
            return original(prim, args, params, name)
        finally:
            shapes = [list(getattr(a, "shape", ())) for a in args]
            _record("aten::" + prim.name.rstrip("_"), time.perf_counter() - start, shapes)
    return classmethod(_bind)


_patched = [None]


def _install():
    Tensor = graph.Tensor
    if _patched[0] is None:
        _patched[0] = Tensor.__dict__["_bind"]
        Tensor._bind = _timed_bind(Tensor._bind)


def _uninstall():
    if _patched[0] is not None:
        graph.Tensor._bind = _patched[0]
        _patched[0] = None


class profile:
    """Context manager recording the eager operations run inside it (PyTorch's profiler API;
    CUDA timing is refused, as tapegrad's eager tensors live on the CPU)."""

    def __init__(self, enabled=True, *, use_cuda=False, use_device=None, record_shapes=False,
                 with_flops=False, profile_memory=False, with_stack=False, with_modules=False,
                 use_kineto=False, use_cpu=True, **kwargs):
        if use_cuda or use_device not in (None, "cpu"):
            from .._device import check_device
            check_device("cuda")
        self.enabled = enabled
        self.record_shapes = record_shapes
        self._events = EventList()

    def __enter__(self):
        if self.enabled:
            with _lock:
                _active.append(self)
                _install()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            with _lock:
                _active.remove(self)
                if not _active:
                    _uninstall()
        return False

    def events(self):
        return self._events

    function_events = property(events)

    def key_averages(self, group_by_input_shape=False, group_by_stack_n=0):
        return self._events.key_averages(group_by_input_shape)

    def table(self, **kwargs):
        return self._events.table(**kwargs)

    @property
    def self_cpu_time_total(self):
        return self._events.self_cpu_time_total

    def export_chrome_trace(self, path):
        import json
        t, trace = 0.0, []
        for e in self._events:
            trace.append({"name": e.name, "ph": "X", "ts": t, "dur": e.cpu_time_total,
                          "pid": 0, "tid": 0})
            t += e.cpu_time_total
        with open(path, "w") as f:
            json.dump({"traceEvents": trace}, f)

    def __str__(self):
        return self.key_averages().table()


class record_function:
    """Label a range of code; it shows as one row (its time includes the operations inside)."""

    def __init__(self, name, args=None):
        self.name = name

    def __enter__(self):
        _enter_frame()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        _record(self.name, time.perf_counter() - self._start, None)
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with record_function(self.name):
                return fn(*args, **kwargs)
        return wrapper

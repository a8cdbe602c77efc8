"""torch.profiler: the CPU profiler of eager operations (see tapegrad.autograd.profiler)."""
import enum

from .autograd.profiler import EventList, record_function
from .autograd.profiler import profile as _autograd_profile


class ProfilerActivity(enum.Enum):
    CPU = "CPU"
    CUDA = "CUDA"


class profile(_autograd_profile):
    def __init__(self, activities=None, *, schedule=None, on_trace_ready=None,
                 record_shapes=False, profile_memory=False, with_stack=False, with_flops=False,
                 with_modules=False, **kwargs):
        cuda = activities is not None and ProfilerActivity.CUDA in activities
        super().__init__(use_cuda=cuda, record_shapes=record_shapes)
        self.on_trace_ready = on_trace_ready

    def step(self):
        pass

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if self.on_trace_ready is not None:
            self.on_trace_ready(self)
        return False


__all__ = ["profile", "record_function", "ProfilerActivity", "EventList"]

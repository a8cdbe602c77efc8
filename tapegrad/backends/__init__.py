"""torch.backends: which accelerators the eager face can use (none besides the CPU)."""
from . import cudnn, mps  # noqa: F401

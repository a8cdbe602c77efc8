"""torch.cuda for the eager face: there is no CUDA device for eager tensors.

The GPU is reached through the traced face, tapegrad.jit(fun, device='cuda'), which does not
need this module."""


def is_available():
    return False


def device_count():
    return 0


def is_initialized():
    return False


def manual_seed(seed):
    """Nothing to seed: eager tensors have no CUDA generator."""


manual_seed_all = manual_seed


def synchronize(device=None):
    """Nothing runs asynchronously on the eager face."""


def empty_cache():
    """No CUDA memory is held by eager tensors."""


def current_device():
    from ._device import _NO_CUDA
    raise RuntimeError(_NO_CUDA)


get_device_name = current_device

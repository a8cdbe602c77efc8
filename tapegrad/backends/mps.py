"""torch.backends.mps: Apple GPUs are not a tapegrad device."""


def is_available():
    return False


def is_built():
    return False

"""torch.device: eager tensors live on the CPU; CUDA runs through tapegrad.jit(device='cuda')."""

_NO_CUDA = ("tapegrad's eager tensors live on the CPU (torch.cuda.is_available() is False); "
            "use device='cpu', or tapegrad.jit(..., device='cuda') for the GPU")


class device:
    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            type, index = type.type, type.index
        elif isinstance(type, int):
            type, index = "cuda", type
        elif ":" in type:
            type, _, number = type.partition(":")
            if not number.isdigit():
                raise RuntimeError(f"Invalid device string: '{type}:{number}'")
            index = int(number)
        if type not in ("cpu", "cuda", "mps", "meta", "xpu"):
            raise RuntimeError("Expected one of cpu, cuda, mps, xpu, meta device type at start "
                               f"of device string: {type}")
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "index", index)

    def __setattr__(self, name, value):
        raise AttributeError(f"attribute '{name}' of 'torch.device' objects is not writable")

    def __repr__(self):
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):  # tapegrad's code compares devices with strings
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (self.type, self.index))


CPU = device("cpu")


def check_device(where):
    """Accept the CPU (a device, 'cpu', None); refuse any other device with the way out."""
    if where is None:
        return CPU
    target = where if isinstance(where, device) else device(where)
    if target.type != "cpu":
        raise RuntimeError(f"cannot move to {str(target)!r}: " + _NO_CUDA)
    return target


def set_default_device(where):
    """Only the CPU holds eager tensors: 'cpu' (or None) is accepted, anything else refused."""
    check_device(where)


def get_default_device():
    return CPU

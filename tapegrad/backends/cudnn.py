"""torch.backends.cudnn: flags tutorials set; they change nothing on the CPU."""
enabled = False
benchmark = False
deterministic = False


def is_available():
    return False

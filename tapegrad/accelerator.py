"""torch.accelerator (the basics tutorials pick their device with it): none besides the CPU."""


def is_available():
    return False


def current_accelerator(check_available=False):
    return None


def device_count():
    return 0

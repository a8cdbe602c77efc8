"""torch.nn: layers (modules), their functional forms, initialisers and utilities."""
from . import functional, init, utils
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _modules_all
from .modules.module import Module
from .parameter import Parameter

__all__ = ["functional", "init", "utils", "Parameter", "Module"] + _modules_all

"""Layers, containers and losses shaped like ``torch.nn``; each layer calls ``cnnkit.functional``."""

from . import init, utils
from .containers import Concat, Join, ModuleDict, ModuleList
from .dropconnect import DropConnectConv2d, DropConnectLinear
from .layers import (
    ELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    PReLU,
    ReLU,
    ReLU6,
    Residual,
    Sequential,
    Sigmoid,
    Softplus,
    Tanh,
)
from .losses import CrossEntropyLoss, L1Loss, MSELoss, MultiMarginLoss
from .maxout import Maxout, MaxoutConv2d, MaxoutLinear
from .module import Module, Parameter

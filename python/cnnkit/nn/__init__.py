"""Layers, containers and losses shaped like ``torch.nn``; each layer calls ``cnnkit.functional``."""

from . import init, utils
from .containers import Concat, Join, ModuleDict, ModuleList
from .dropconnect import DropConnectConv2d, DropConnectLinear
from .layers import (
    ELU,
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Dropout2d,
    Flatten,
    Hardtanh,
    Identity,
    LeakyReLU,
    Linear,
    LocalResponseNorm,
    LogSoftmax,
    MaxPool2d,
    PReLU,
    ReLU,
    ReLU6,
    Residual,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .losses import CrossEntropyLoss, L1Loss, MSELoss, MultiMarginLoss, NLLLoss
from .maxout import Maxout, MaxoutConv2d, MaxoutLinear
from .module import Module, Parameter

__all__ = [
    "init", "utils",
    # base classes and containers
    "Module", "Parameter", "Sequential", "Residual", "Identity", "ModuleList", "ModuleDict", "Concat", "Join",
    # convolution, pooling, linear
    "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Linear", "Flatten",
    # normalisation and dropout
    "BatchNorm1d", "BatchNorm2d", "LocalResponseNorm", "Dropout", "Dropout2d",
    # activations
    "ReLU", "ReLU6", "LeakyReLU", "ELU", "PReLU", "Sigmoid", "Tanh", "Softplus", "Hardtanh", "GELU",
    "SiLU", "Softmax", "LogSoftmax",
    # the lectures' extras: maxout units, dropped connections
    "Maxout", "MaxoutLinear", "MaxoutConv2d", "DropConnectLinear", "DropConnectConv2d",
    # losses
    "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "MultiMarginLoss",
]

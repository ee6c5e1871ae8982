"""Classic CNNs built from ``cnnkit.nn``, sized for 28x28 / 32x32 inputs.

Each returns a ``Sequential`` whose ``state_dict`` keys are those of the same
``torch.nn.Sequential`` model, so weights move between the two unchanged
(:func:`inception` and :func:`densenet` hold ``Concat`` containers, whose torch
twin is a module registering the same branches as ``"0"``, ``"1"``, ...).
"""

from . import nn

__all__ = ["lenet5", "mnist_cnn", "alexnet", "vgg", "resnet", "inception", "densenet"]


def lenet5(num_classes=10, in_channels=1, activation="tanh", pool="avg"):
    """LeNet-5 (LeCun et al., 1998) for 28x28 digits: the first convolution pads by 2 so that
    C1 sees the paper's 32x32 field. C1 6@5x5 -> S2 -> C3 16@5x5 -> S4 -> C5 120 -> F6 84 -> 10.
    ``activation`` is "tanh" (classic) or "relu"; ``pool`` is "avg" (classic) or "max".
    """
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    pool_layer = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[pool]
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), act(), pool_layer(2),
        nn.Conv2d(6, 16, 5), act(), pool_layer(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, num_classes),
    )


def mnist_cnn(num_classes=10, in_channels=1, hidden=1024, dropout=0.5):
    """The lectures' MNIST network: conv 32@5x5 -> pool -> conv 64@5x5 -> pool -> FC -> 10
    ("same" padding, ReLU, 2x2 max pooling, dropout before the classifier)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


def alexnet(num_classes=10, in_channels=3, width=64, image_size=32):
    """An AlexNet-style network for small images: five convolutions (ReLU, local response
    normalisation after the first two, overlapping 3x3/2 max pooling) and a dropout classifier."""
    w = width
    feat = image_size
    for _ in range(3):
        feat = (feat - 3) // 2 + 1
    return nn.Sequential(
        nn.Conv2d(in_channels, w, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
        nn.Conv2d(w, 3 * w, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
        nn.Conv2d(3 * w, 6 * w, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6 * w, 4 * w, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(4 * w * feat * feat, 16 * w), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(16 * w, 16 * w), nn.ReLU(),
        nn.Linear(16 * w, num_classes),
    )


_VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def vgg(config="vgg11", num_classes=10, in_channels=3, batch_norm=True, width_divisor=1):
    """A VGG network for 32x32 inputs: 3x3 convolutions (+ batch norm) and 2x2 max pooling,
    then global average pooling and a linear classifier. ``config`` is "vgg11", "vgg13",
    "vgg16" or a list like ``[64, "M", 128, "M"]``; ``width_divisor`` shrinks every layer."""
    cfg = _VGG_CONFIGS[config] if isinstance(config, str) else list(config)
    layers, c = [], in_channels
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        out = max(1, item // width_divisor)
        layers.append(nn.Conv2d(c, out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU())
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def _basic_block(c_in, c_out, stride):
    body = nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
    )
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
    return nn.Sequential(nn.Residual(body, shortcut), nn.ReLU())


def resnet(depth=20, num_classes=10, in_channels=3, width=16):
    """A CIFAR-style ResNet (He et al., 2016): depth = 6n + 2 with three stages of n basic
    blocks at widths w, 2w, 4w, then global average pooling and a linear classifier."""
    if (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 (8, 14, 20, 32, ...), got {depth}")
    n = (depth - 2) // 6
    layers = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    c = width
    for stage, out in enumerate((width, 2 * width, 4 * width)):
        for block in range(n):
            layers.append(_basic_block(c, out, 2 if stage > 0 and block == 0 else 1))
            c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def _conv_bn_relu(c_in, c_out, kernel_size, padding=0):
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, padding=padding, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU())


# GoogLeNet's (Szegedy et al., 2015) inception 3a, 3b and 4a: the 1x1 branch, the 3x3 branch's
# reduction and output, the 5x5 branch's reduction and output, the pool projection. "M" is a
# 3x3/2 max pooling.
_INCEPTION_BLOCKS = [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M", (192, 96, 208, 16, 48, 64)]


def inception(num_classes=10, in_channels=3, width_divisor=4, dropout=0.4):
    """A small Inception network (GoogLeNet's blocks 3a, 3b, 4a) for 32x32 inputs.

    A 3x3 stem, then inception blocks: four parallel branches (1x1; 1x1 then 3x3;
    1x1 then 5x5; 3x3 max pooling then 1x1), each convolution followed by batch
    norm and ReLU, concatenated along channels (:class:`cnnkit.nn.Concat`); a
    max pooling halves the resolution between 3b and 4a. The classifier is
    global average pooling, dropout and one linear layer, as in GoogLeNet.
    ``width_divisor`` divides every channel count of the paper's blocks.
    """
    def c(n):
        return max(1, n // width_divisor)

    c_in = c(192)
    layers = [_conv_bn_relu(in_channels, c_in, 3, padding=1)]
    for block in _INCEPTION_BLOCKS:
        if block == "M":
            layers.append(nn.MaxPool2d(3, 2, padding=1))
            continue
        c1, c3r, c3, c5r, c5, cp = map(c, block)
        layers.append(nn.Concat(
            _conv_bn_relu(c_in, c1, 1),
            nn.Sequential(_conv_bn_relu(c_in, c3r, 1), _conv_bn_relu(c3r, c3, 3, padding=1)),
            nn.Sequential(_conv_bn_relu(c_in, c5r, 1), _conv_bn_relu(c5r, c5, 5, padding=2)),
            nn.Sequential(nn.MaxPool2d(3, 1, padding=1), _conv_bn_relu(c_in, cp, 1)),
        ))
        c_in = c1 + c3 + c5 + cp
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


def _bn_relu_conv(c_in, c_out, kernel_size, padding=0):
    return [nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, kernel_size, padding=padding, bias=False)]


def densenet(num_classes=10, in_channels=3, growth_rate=12, block_config=(6, 6, 6), compression=0.5):
    """A DenseNet-BC (Huang et al., 2017) for 32x32 inputs.

    A 3x3 stem of ``2 * growth_rate`` channels, then dense blocks separated by
    transitions (batch norm, ReLU, 1x1 convolution keeping ``compression`` of
    the channels, 2x2 average pooling). Each dense layer is batch norm, ReLU,
    a 1x1 bottleneck to ``4 * growth_rate`` channels, batch norm, ReLU and a 3x3
    convolution to ``growth_rate`` channels, whose output is concatenated to its
    input (``Concat(Identity(), layer)``): every layer sees every earlier output
    of its block. Batch norm, ReLU, global average pooling and a linear layer
    classify. ``block_config`` gives the layers per block; (16, 16, 16) with
    growth rate 12 is the paper's DenseNet-BC-100.
    """
    c = 2 * growth_rate
    layers = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False)]
    for i, n in enumerate(block_config):
        block = []
        for _ in range(n):
            bottleneck = _bn_relu_conv(c, 4 * growth_rate, 1) + _bn_relu_conv(4 * growth_rate, growth_rate, 3, 1)
            block.append(nn.Concat(nn.Identity(), nn.Sequential(*bottleneck)))
            c += growth_rate
        layers.append(nn.Sequential(*block))
        if i < len(block_config) - 1:
            c_out = max(1, int(c * compression))
            layers.append(nn.Sequential(*_bn_relu_conv(c, c_out, 1), nn.AvgPool2d(2)))
            c = c_out
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)

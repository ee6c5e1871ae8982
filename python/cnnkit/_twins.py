"""torch.nn twins of cnnkit models: the same layers under the same names, so that a cnnkit
``state_dict`` loads into the twin unchanged. The benchmarks compare against these (with
PyTorch itself and with ONNX Runtime through the twin's ONNX export)."""

import numpy as np


def _branches(torch, branches, combine):
    """A torch module holding ``branches`` as "0", "1", ... and returning ``combine`` of their outputs."""

    class Branches(torch.nn.Module):
        def forward(self, x):
            return combine([b(x) for b in self.children()])

    twin = Branches()
    for i, b in enumerate(branches):
        twin.add_module(str(i), b)
    return twin


def _residual(torch, body, shortcut):
    """cnnkit.nn.Residual in torch, under the same child names (``body``, ``shortcut``)."""

    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    return Residual()


def torch_twin(torch, ours):
    """The torch.nn twin of a cnnkit model built from Sequential, Residual, Concat and the common
    layers, with ``ours``' weights and buffers. Raises TypeError naming a layer without a twin."""
    from . import nn

    t = torch.nn

    def convert(m):
        if isinstance(m, nn.Sequential):
            return t.Sequential(*[convert(c) for c in m])
        if isinstance(m, nn.Concat):
            dim = m.dim
            return _branches(torch, [convert(c) for c in m], lambda outs: torch.cat(outs, dim))
        if isinstance(m, nn.Residual):
            return _residual(torch, convert(m.body), convert(m.shortcut))
        if isinstance(m, nn.BatchNorm2d):
            return t.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return t.AdaptiveAvgPool2d(m.output_size)
        if isinstance(m, nn.Conv2d):
            return t.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                            m.groups, bias=m.bias is not None, padding_mode=m.padding_mode)
        if isinstance(m, nn.Linear):
            return t.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        if isinstance(m, nn.AvgPool2d):
            return t.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                               m.divisor_override)
        if isinstance(m, nn.MaxPool2d):
            return t.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode)
        if isinstance(m, nn.LocalResponseNorm):
            return t.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)
        if isinstance(m, nn.Flatten):
            return t.Flatten(m.start_dim, m.end_dim)
        if isinstance(m, nn.Dropout2d):
            return t.Dropout2d(m.p)
        if isinstance(m, nn.Dropout):
            return t.Dropout(m.p)
        simple = {nn.ReLU: t.ReLU, nn.Tanh: t.Tanh, nn.Sigmoid: t.Sigmoid, nn.Identity: t.Identity}
        if type(m) in simple:
            return simple[type(m)]()
        raise TypeError(f"no torch twin for {type(m).__name__}")

    twin = convert(ours)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    twin.train(ours.training)
    return twin

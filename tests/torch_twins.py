"""torch.nn twins of cnnkit's models, for the tests that compare with PyTorch (torch passed in)."""


def lenet5(torch):
    n = torch.nn
    return n.Sequential(n.Conv2d(1, 6, 5, padding=2), n.Tanh(), n.AvgPool2d(2), n.Conv2d(6, 16, 5), n.Tanh(),
                        n.AvgPool2d(2), n.Flatten(), n.Linear(400, 120), n.Tanh(), n.Linear(120, 84), n.Tanh(),
                        n.Linear(84, 10))


def _branched(torch, branches, combine):
    """A torch module holding ``branches`` as "0", "1", ... and returning ``combine`` of their outputs."""

    class Branched(torch.nn.Module):
        def forward(self, x):
            return combine([b(x) for b in self.children()])

    module = Branched()
    for i, b in enumerate(branches):
        module.add_module(str(i), b)
    return module


def concat(torch, *branches, dim=1):
    """cnnkit.nn.Concat in torch: the branches' outputs concatenated."""
    return _branched(torch, branches, lambda outs: torch.cat(outs, dim))


def join(torch, *branches, reduction="mean"):
    """cnnkit.nn.Join in torch: the element-wise mean (or sum) of the branches."""
    return _branched(torch, branches, lambda outs: getattr(torch.stack(outs), reduction)(0))


def _cbr(n, c_in, c_out, k, padding=0):
    return n.Sequential(n.Conv2d(c_in, c_out, k, padding=padding, bias=False), n.BatchNorm2d(c_out), n.ReLU())


def inception(torch, width_divisor=16, num_classes=10, dropout=0.0):
    """cnnkit.models.inception, written out for torch."""
    n = torch.nn

    def c(v):
        return max(1, v // width_divisor)

    c_in = c(192)
    layers = [_cbr(n, 3, c_in, 3, 1)]
    for block in [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M", (192, 96, 208, 16, 48, 64)]:
        if block == "M":
            layers.append(n.MaxPool2d(3, 2, 1))
            continue
        c1, c3r, c3, c5r, c5, cp = map(c, block)
        layers.append(concat(torch, _cbr(n, c_in, c1, 1),
                             n.Sequential(_cbr(n, c_in, c3r, 1), _cbr(n, c3r, c3, 3, 1)),
                             n.Sequential(_cbr(n, c_in, c5r, 1), _cbr(n, c5r, c5, 5, 2)),
                             n.Sequential(n.MaxPool2d(3, 1, 1), _cbr(n, c_in, cp, 1))))
        c_in = c1 + c3 + c5 + cp
    layers += [n.AdaptiveAvgPool2d(1), n.Flatten(), n.Dropout(dropout), n.Linear(c_in, num_classes)]
    return n.Sequential(*layers)


def densenet(torch, growth_rate=4, block_config=(2, 2, 2), num_classes=10):
    """cnnkit.models.densenet, written out for torch (compression 0.5)."""
    n = torch.nn

    def brc(c_in, c_out, k, padding=0):
        return [n.BatchNorm2d(c_in), n.ReLU(), n.Conv2d(c_in, c_out, k, padding=padding, bias=False)]

    c = 2 * growth_rate
    layers = [n.Conv2d(3, c, 3, padding=1, bias=False)]
    for i, count in enumerate(block_config):
        block = []
        for _ in range(count):
            body = n.Sequential(*brc(c, 4 * growth_rate, 1), *brc(4 * growth_rate, growth_rate, 3, 1))
            block.append(concat(torch, n.Identity(), body))
            c += growth_rate
        layers.append(n.Sequential(*block))
        if i < len(block_config) - 1:
            layers.append(n.Sequential(*brc(c, c // 2, 1), n.AvgPool2d(2)))
            c //= 2
    layers += [n.BatchNorm2d(c), n.ReLU(), n.AdaptiveAvgPool2d(1), n.Flatten(), n.Linear(c, num_classes)]
    return n.Sequential(*layers)


def assert_matches_torch(torch, ours, theirs, x, rtol=1e-5, atol=1e-5, seed=0):
    """Load ``ours``' state_dict into ``theirs``, run both forward and backward on ``x`` with the
    same random upstream gradient, and assert that the outputs, the input gradients and every
    parameter gradient agree. Returns our output."""
    import numpy as np

    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    xt = torch.from_numpy(x).requires_grad_()
    yt = theirs(xt)
    y = ours(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), rtol=rtol, atol=atol)
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), rtol=rtol, atol=10 * atol, err_msg=name)
    return y

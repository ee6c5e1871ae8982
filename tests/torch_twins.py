"""torch.nn twins of cnnkit's models, for the tests that compare with PyTorch (torch passed in)."""


def lenet5(torch):
    n = torch.nn
    return n.Sequential(n.Conv2d(1, 6, 5, padding=2), n.Tanh(), n.AvgPool2d(2), n.Conv2d(6, 16, 5), n.Tanh(),
                        n.AvgPool2d(2), n.Flatten(), n.Linear(400, 120), n.Tanh(), n.Linear(120, 84), n.Tanh(),
                        n.Linear(84, 10))


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

"""The model zoo: shapes, parameter counts, a backward pass, and weights moving to and from PyTorch."""

import numpy as np
import pytest

import cnnkit
import torch_twins
from cnnkit import models, nn

CASES = [
    ("lenet5", lambda: models.lenet5(), (1, 28, 28)),
    ("mnist_cnn", lambda: models.mnist_cnn(hidden=64), (1, 28, 28)),
    ("alexnet", lambda: models.alexnet(width=8), (3, 32, 32)),
    ("vgg11", lambda: models.vgg("vgg11", width_divisor=16), (3, 32, 32)),
    ("resnet8", lambda: models.resnet(8, width=4), (3, 32, 32)),
]


@pytest.mark.parametrize("name,make,shape", CASES, ids=[c[0] for c in CASES])
def test_model_forward_backward_shapes(name, make, shape):
    cnnkit.manual_seed(0)
    model = make()
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    out = model(x)
    assert out.shape == (2, 10) and np.isfinite(out).all()
    crit = nn.CrossEntropyLoss()
    crit(out, np.array([1, 7]))
    dx = model.backward(crit.backward())
    assert dx.shape == x.shape
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.data.shape, pname


def test_lenet5_has_the_classic_parameter_count():
    assert sum(p.data.size for p in models.lenet5().parameters()) == 61706


def test_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n"):
        models.resnet(10)


def test_weights_saved_by_pytorch_load_into_the_same_architecture(tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch as st  # needs torch, skipped above when absent
    theirs = torch_twins.lenet5(torch)
    path = tmp_path / "lenet_from_torch.safetensors"
    st.save_file(theirs.state_dict(), str(path))
    ours = models.lenet5()
    cnnkit.load(path, ours)
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours.eval()(x), expected, rtol=1e-4, atol=1e-5)

    cnnkit.save(ours, tmp_path / "back.safetensors")  # and back again
    theirs.load_state_dict(st.load_file(str(tmp_path / "back.safetensors")))


def test_resnet_state_dict_loads_into_a_torch_twin():
    torch = pytest.importorskip("torch")
    ours = models.resnet(8, width=4)
    ours.train()
    ours(np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32))  # move BN stats
    n = torch.nn

    class Residual(n.Module):
        def __init__(self, body, shortcut=None):
            super().__init__()
            self.body, self.shortcut = body, shortcut if shortcut is not None else n.Identity()

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    def block(c_in, c_out, stride):
        body = n.Sequential(n.Conv2d(c_in, c_out, 3, stride, 1, bias=False), n.BatchNorm2d(c_out), n.ReLU(),
                            n.Conv2d(c_out, c_out, 3, 1, 1, bias=False), n.BatchNorm2d(c_out))
        short = None
        if stride != 1 or c_in != c_out:
            short = n.Sequential(n.Conv2d(c_in, c_out, 1, stride, bias=False), n.BatchNorm2d(c_out))
        return n.Sequential(Residual(body, short), n.ReLU())

    twin = n.Sequential(n.Conv2d(3, 4, 3, 1, 1, bias=False), n.BatchNorm2d(4), n.ReLU(), block(4, 4, 1),
                        block(4, 8, 2), block(8, 16, 2), n.AdaptiveAvgPool2d(1), n.Flatten(), n.Linear(16, 10))
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    twin.eval()
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours.eval()(x), expected, rtol=1e-4, atol=1e-4)

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
    ("inception", lambda: models.inception(width_divisor=16), (3, 32, 32)),
    ("densenet", lambda: models.densenet(growth_rate=4, block_config=(2, 2, 2)), (3, 32, 32)),
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


DAG_ZOO = [
    ("inception", lambda: models.inception(width_divisor=16, dropout=0.0), lambda t: torch_twins.inception(t)),
    ("densenet", lambda: models.densenet(growth_rate=4, block_config=(2, 2, 2)), lambda t: torch_twins.densenet(t)),
]


@pytest.mark.parametrize("name,make,twin", DAG_ZOO, ids=[c[0] for c in DAG_ZOO])
def test_dag_models_match_a_torch_twin_in_outputs_and_gradients(name, make, twin):
    """Same state_dict, then training-mode forward (batch statistics), backward and running stats
    against the torch twin in float64, and eval-mode outputs against it in float32."""
    torch = pytest.importorskip("torch")
    cnnkit.manual_seed(0)
    ours, theirs = make(), twin(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    theirs64 = theirs.double().train()
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    expected = theirs64(xt)
    out = ours.train()(x)
    g = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    expected.backward(torch.tensor(g, dtype=torch.float64))
    dx = ours.backward(g)

    def close(a, b, what, scale=None):
        # Absolute errors relative to the size of what is compared: a one-channel batch-norm
        # weight's gradient is a sum that cancels to far below the rest of the gradients.
        b = np.asarray(b, dtype=np.float64)
        scale = np.abs(b).max() if scale is None else scale
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale, err_msg=f"{name}: {what}")

    close(out, expected.detach().numpy(), "output")
    close(dx, xt.grad.numpy(), "input gradient")
    tparams = dict(theirs64.named_parameters())
    grad_scale = max(np.abs(t.grad.numpy()).max() for t in tparams.values())
    for pname, p in ours.named_parameters():
        close(p.grad, tparams[pname].grad.numpy(), f"grad of {pname}", grad_scale)
    tbuffers = dict(theirs64.named_buffers())
    for bname, b in ours.named_buffers():
        close(b, tbuffers[bname].numpy(), bname)
    theirs32 = theirs64.float().eval()
    with torch.no_grad():
        close(ours.eval()(x), theirs32(torch.from_numpy(x)).numpy(), "eval output")


@pytest.mark.parametrize("name", ["inception", "densenet"])
def test_dag_models_are_registered_for_the_command_line_and_the_benchmark(name):
    from cnnkit import _twins, cli

    assert name in cli.MODELS
    model = cli._build_model(name, 1, 28)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert model.eval()(x).shape == (2, 10)
    torch = pytest.importorskip("torch")
    twin = _twins.torch_twin(torch, model).eval()
    with torch.no_grad():
        np.testing.assert_allclose(model(x), twin(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)

"""Any array in, the same kind out (cnnkit._arrays): PyTorch tensors and DLPack producers go through
every functional op without copies and come back as their own kind; NumPy stays NumPy."""

import inspect
import subprocess
import sys

import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F


def _public_ops():
    return sorted(name for name, f in vars(F).items()
                  if not name.startswith("_") and inspect.isfunction(f) and f.__module__ == F.__name__)


def _sample_table():
    """Arguments for every public op: {name: (args, kwargs)}, drawn afresh (the same values) per call."""
    rng = np.random.default_rng(0)

    def a(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x, g, x2, g2 = a(2, 3, 6, 6), a(2, 3, 6, 6), a(4, 5), a(4, 5)
    w3, b3, t4 = a(3) + 2, a(3), a(2, 3, 6, 6)
    labels = np.array([0, 4, 2, 1], np.int64)
    conv_w, conv_b, conv_g = a(4, 3, 3, 3), a(4), a(2, 4, 6, 6)
    pool_g = a(2, 3, 3, 3)
    lin_w, lin_b, lin_g = a(3, 5), a(3), a(4, 3)
    mask = (rng.random(x.shape) > 0.5).astype(np.float32) * 2
    indices = F.max_pool2d(x, 2, return_indices=True)[1]
    rm, rv = a(3), np.abs(a(3)) + 0.5
    table = {
        "adaptive_avg_pool2d": ((x, 3), {}),
        "adaptive_avg_pool2d_backward": ((pool_g, x, 3), {}),
        "local_response_norm": ((x, 3), {}),
        "local_response_norm_backward": ((g, x, 3), {}),
        "dropout": ((x, 0.5, True), {"generator": np.random.default_rng(1), "return_mask": True}),
        "dropout_backward": ((g, mask, 0.5), {}),
        "mse_loss": ((x, t4), {"reduction": "none"}),
        "mse_loss_backward": ((x, t4, g, "none"), {}),
        "l1_loss": ((x, t4), {}),
        "l1_loss_backward": ((x, t4), {}),
        "multi_margin_loss": ((x2, labels), {}),
        "multi_margin_loss_backward": ((x2, labels), {}),
        "conv2d": ((x, conv_w, conv_b, 1, 1), {}),
        "conv2d_backward": ((conv_g, x, conv_w, 1, 1), {}),
        "max_pool2d": ((x, 2), {"return_indices": True}),
        "max_pool2d_backward": ((pool_g, x, indices, 2), {}),
        "avg_pool2d": ((x, 2), {}),
        "avg_pool2d_backward": ((pool_g, x, 2), {}),
        "batch_norm": ((x, rm, rv, w3, b3), {"training": False}),
        "batch_norm_backward": ((g, x, None, None, w3), {"training": True}),
        "batch_norm_relu": ((x, rm, rv, w3, b3), {"training": False}),
        "batch_norm_relu_backward": ((g, x, np.abs(x), None, None, w3), {"training": True}),
        "add": ((x, g), {}),
        "add_relu": ((x, g), {}),
        "prelu": ((x, w3), {}),
        "prelu_backward": ((g, x, w3), {}),
        "maxout": ((x2, 5), {}),
        "maxout_backward": ((a(4, 1), x2, 5), {}),
        "linear": ((x2, lin_w, lin_b), {}),
        "linear_backward": ((lin_g, x2, lin_w), {}),
        "softmax": ((x2, 1), {}),
        "softmax_backward": ((g2, F.softmax(x2, 1), 1), {}),
        "log_softmax": ((x2, 1), {}),
        "log_softmax_backward": ((g2, F.log_softmax(x2, 1), 1), {}),
        "cross_entropy": ((x2, labels), {"reduction": "none"}),
        "cross_entropy_backward": ((x2, labels, a(4)), {"reduction": "none"}),
        "nll_loss": ((F.log_softmax(x2, 1), labels), {"weight": np.abs(a(5)) + 0.5}),
        "nll_loss_backward": ((F.log_softmax(x2, 1), labels, a(4)), {"reduction": "none"}),
        "conv_transpose2d": ((conv_g, conv_w, a(3), 2, 1, 1), {}),
        "conv_transpose2d_backward": ((a(2, 3, 12, 12), conv_g, conv_w, 2, 1, 1), {}),
        "dropout2d": ((x, 0.5, True), {"generator": np.random.default_rng(1), "return_mask": True}),
        "dropout2d_backward": ((g, (rng.random((2, 3, 1, 1)) > 0.5).astype(np.float32) * 2, 0.5), {}),
        "flatten": ((x, 1), {}),
        "flatten_backward": ((a(2, 108), x), {}),
        "pad": ((x, (1, 2, 0, 1)), {"mode": "reflect"}),
        "pad_backward": ((a(2, 3, 7, 9), (1, 2, 0, 1)), {"mode": "reflect"}),
        "interpolate": ((x,), {"scale_factor": 2, "mode": "bilinear", "align_corners": False}),
        "interpolate_backward": ((a(2, 3, 12, 12), x), {"scale_factor": 2, "mode": "bilinear",
                                                         "align_corners": False}),
        "one_hot": ((labels, 5), {}),
    }
    for name in ("relu", "leaky_relu", "elu", "relu6", "sigmoid", "tanh", "softplus", "hardtanh", "gelu", "silu"):
        table[name] = ((x,), {})
        table[name + "_backward"] = ((g, x), {})
    return table


def _convert(sample, convert):
    args, kwargs = sample
    c = lambda v: convert(v) if isinstance(v, np.ndarray) else v  # noqa: E731
    return [c(v) for v in args], {k: c(v) for k, v in kwargs.items()}


def _flatten(result):
    return list(result) if isinstance(result, tuple) else [result]


def _same_results(got, expected, kind, op):
    """``got`` has ``expected``'s structure, arrays of type ``kind`` with equal values."""
    got, expected = _flatten(got), _flatten(expected)
    assert len(got) == len(expected), op
    for g, e in zip(got, expected):
        if isinstance(e, np.ndarray):
            assert type(g) is kind, f"{op}: {type(g).__name__} came back, not {kind.__name__}"
            np.testing.assert_array_equal(np.from_dlpack(g), e, err_msg=op)
        else:
            assert type(g) is type(e) and (g == e or g is e), op


def test_every_public_op_has_a_sample_and_is_wrapped():
    missing = set(_public_ops()) - set(_sample_table())
    assert not missing, f"add a sample to _sample_table for {sorted(missing)}"
    bare = [op for op in _public_ops() if not hasattr(getattr(F, op), "__wrapped__")]
    assert not bare, f"{bare} are defined after functional.py's wrap_public_functions line"


@pytest.mark.parametrize("op", _public_ops())
def test_torch_tensors_go_through_every_op_and_come_back_as_torch(op):
    torch = pytest.importorskip("torch")
    expected = getattr(F, op)(*_sample_table()[op][0], **_sample_table()[op][1])
    args, kwargs = _convert(_sample_table()[op], lambda v: torch.from_numpy(v.copy()))
    _same_results(getattr(F, op)(*args, **kwargs), expected, torch.Tensor, op)


class ReadOnlyProducer:
    """A DLPack 1.x producer that is not NumPy (no ``__array__``) and refuses writes."""

    def __init__(self, array):
        self._array = array.copy()
        self._array.flags.writeable = False
        self.max_versions = []

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        self.max_versions.append(max_version)
        return self._array.__dlpack__(stream=stream, max_version=max_version, dl_device=dl_device, copy=copy)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


class ProducerWithFromDlpack(ReadOnlyProducer):
    """A producer whose type can also import arrays: results come back as this kind."""

    @classmethod
    def from_dlpack(cls, array):
        return cls(np.from_dlpack(array))


@pytest.mark.parametrize("op", _public_ops())
def test_a_read_only_dlpack_producer_goes_through_every_op_and_comes_back_as_numpy(op):
    expected = getattr(F, op)(*_sample_table()[op][0], **_sample_table()[op][1])
    producers = []

    def produce(v):
        producers.append(ReadOnlyProducer(v))
        return producers[-1]

    args, kwargs = _convert(_sample_table()[op], produce)
    _same_results(getattr(F, op)(*args, **kwargs), expected, np.ndarray, op)
    assert producers and all(p.max_versions and p.max_versions[0] >= (1, 0) for p in producers)


def test_a_producer_with_from_dlpack_gets_its_own_kind_back():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    out = F.max_pool2d(ProducerWithFromDlpack(x), 2, return_indices=True)
    assert all(type(o) is ProducerWithFromDlpack for o in out)
    np.testing.assert_array_equal(np.from_dlpack(out[0]), F.max_pool2d(x, 2))


def _spy(monkeypatch, name):
    """Record the data pointers of the arrays ``_C.<name>`` receives and returns."""
    seen = {"in": [], "out": []}
    real = getattr(F._C, name)

    def spy(*args, **kwargs):
        seen["in"] += [a.ctypes.data for a in args if isinstance(a, np.ndarray)]
        out = real(*args, **kwargs)
        seen["out"] += [o.ctypes.data for o in _flatten(out) if isinstance(o, np.ndarray)]
        return out

    monkeypatch.setattr(F._C, name, spy)
    return seen


def test_contiguous_float32_tensors_cross_without_a_copy_both_ways(monkeypatch):
    torch = pytest.importorskip("torch")
    x, w, b = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
    seen = _spy(monkeypatch, "conv2d")
    y = F.conv2d(x, w, b, padding=1)
    assert seen["in"] == [x.data_ptr(), w.data_ptr(), b.data_ptr()]
    assert seen["out"] == [y.data_ptr()]
    seen = _spy(monkeypatch, "activation")
    y = F.relu(x)
    assert seen["in"] == [x.data_ptr()] and seen["out"] == [y.data_ptr()]


def test_a_dlpack_producer_is_read_without_a_copy(monkeypatch):
    producer = ReadOnlyProducer(np.arange(12, dtype=np.float32))
    seen = _spy(monkeypatch, "activation")
    F.tanh(producer)
    assert seen["in"] == [producer._array.ctypes.data]


def test_a_tensor_that_requires_grad_is_read_through_detach():
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    y = F.sigmoid(x)
    assert type(y) is torch.Tensor and not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), F.sigmoid(x.detach().numpy()))
    p = torch.nn.Parameter(torch.randn(4, 5))
    assert type(F.linear(torch.randn(3, 5), p)) is torch.Tensor


def test_non_contiguous_and_other_dtypes_follow_the_numpy_rules():
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 3, 6, 5).transpose(2, 3)
    np.testing.assert_array_equal(F.relu(x).numpy(), F.relu(x.contiguous().numpy()))
    d = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    y = F.avg_pool2d(d, 2)
    assert y.dtype == torch.float32
    np.testing.assert_array_equal(y.numpy(), F.avg_pool2d(d.numpy(), 2))
    with pytest.raises(TypeError, match="input must be a float or integer array, got dtype bool"):
        F.relu(torch.zeros(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="relu: input .*cannot be read as a NumPy array"):
        F.relu(torch.zeros(3, dtype=torch.bfloat16))


def test_numpy_in_numpy_out_and_the_first_foreign_argument_sets_the_kind():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    assert type(F.linear(x, w)) is np.ndarray
    mixed = F.linear(x, torch.from_numpy(w))
    assert type(mixed) is torch.Tensor
    np.testing.assert_array_equal(mixed.numpy(), F.linear(x, w))
    assert type(F.linear(x, ReadOnlyProducer(w))) is np.ndarray


def _bn_state(rng):
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 2 + 1
    return x, rng.standard_normal(3).astype(np.float32), rng.random(3).astype(np.float32) + 0.5


def test_torch_running_statistics_are_updated_in_place():
    torch = pytest.importorskip("torch")
    x, rm, rv = _bn_state(np.random.default_rng(0))
    rm_t, rv_t = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    pointers = (rm_t.data_ptr(), rv_t.data_ptr())
    out = F.batch_norm(torch.from_numpy(x), rm_t, rv_t, training=True, momentum=0.3)
    expected = F.batch_norm(x, rm, rv, training=True, momentum=0.3)
    np.testing.assert_array_equal(out.numpy(), expected)
    assert (rm_t.data_ptr(), rv_t.data_ptr()) == pointers
    np.testing.assert_array_equal(rm_t.numpy(), rm)
    np.testing.assert_array_equal(rv_t.numpy(), rv)
    assert not np.array_equal(rm, _bn_state(np.random.default_rng(0))[1])


def test_running_statistics_that_cannot_be_written_are_refused_by_name():
    torch = pytest.importorskip("torch")
    x, rm, rv = _bn_state(np.random.default_rng(0))
    with pytest.raises(ValueError, match="running_mean must be writeable"):
        F.batch_norm(torch.from_numpy(x), ReadOnlyProducer(rm), torch.from_numpy(rv), training=True)
    with pytest.raises(TypeError, match="running_var must be float32"):
        F.batch_norm(torch.from_numpy(x), torch.from_numpy(rm), torch.from_numpy(rv).double(), training=True)
    # Eval mode only reads them, so read-only statistics are fine there.
    out = F.batch_norm(ReadOnlyProducer(x), ReadOnlyProducer(rm), ReadOnlyProducer(rv))
    np.testing.assert_array_equal(out, F.batch_norm(x, rm, rv))


class CudaProducer(ReadOnlyProducer):
    def __dlpack_device__(self):
        return (2, 1)


def test_a_gpu_array_beside_a_cpu_one_is_refused_naming_both():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="conv2d: weight is on cuda:1 but input is a NumPy array on the CPU"):
        F.conv2d(x, CudaProducer(np.zeros((1, 1, 3, 3), np.float32)))
    with pytest.raises(ValueError, match="batch_norm: running_var is on cuda:1 but input is a NumPy array"):
        F.batch_norm(x, np.zeros(1, np.float32), running_var=CudaProducer(np.ones(1, np.float32)))


def test_a_tensor_on_another_device_is_refused_naming_it():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="linear: bias is on device meta; cnnkit runs on the CPU and on CUDA devices only"):
        F.linear(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(4, device="meta"))


def test_importing_cnnkit_does_not_import_torch():
    code = ("import sys, numpy as np, cnnkit; cnnkit.functional.relu(np.zeros(3, np.float32)); "
            "assert 'torch' not in sys.modules and 'jax' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_ops_keep_their_names_signatures_and_docs():
    assert F.conv2d.__name__ == "conv2d" and "cross-correlation" in F.conv2d.__doc__
    assert str(inspect.signature(F.conv2d)) == str(inspect.signature(F.conv2d.__wrapped__))
    assert cnnkit.functional.relu is F.relu
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'weight'"):
        F.conv2d(np.zeros((1, 1, 3, 3), np.float32))

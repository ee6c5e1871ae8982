"""The Python side of cnnkit's CUDA backend, checked without a GPU: device detection, the dispatch of
functional calls with CUDA arguments (routing, mixed devices, missing kernels or devices, with fake
``__dlpack_device__`` objects), the ops modules' signatures, the argument checks, build info, and
models and optimizers on a stand-in device (PyTorch CPU tensors treated as CUDA arrays)."""

import inspect
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import cnnkit
from cnnkit import _arrays, cuda, nn, optim
from cnnkit import functional as F
from cnnkit.cuda import _checks, _device

needs_no_gpu = pytest.mark.skipif(cuda.is_available(), reason="checks the answers given where no GPU is usable")


class FakeCudaArray:
    """Just enough of a CUDA array for the dispatch: a DLPack device and a shape."""

    def __init__(self, shape, device=0):
        self.shape, self.ndim, self.dtype = tuple(shape), len(shape), np.dtype(np.float32)
        self._device = device

    def __dlpack__(self, stream=None):
        raise BufferError("a fake array has no memory")

    def __dlpack_device__(self):
        return (2, self._device)  # kDLCUDA


@pytest.fixture
def fake_gpu(monkeypatch):
    """A usable "GPU" whose ops are the ``twins`` dict the test fills in."""
    twins = {}
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "_ops", lambda: twins)
    return twins


# -- device detection and build info ------------------------------------------------------


@needs_no_gpu
def test_no_device_is_reported_with_a_reason():
    assert cuda.device_count() == 0 and not cuda.is_available()
    assert cuda.unavailable_reason()
    info = cnnkit.build_info()["cuda"]
    assert info["available"] is False and info["reason"] == cuda.unavailable_reason()


def test_build_info_describes_the_cuda_build():
    info = cnnkit.build_info()["cuda"]
    assert info["built"] is cuda.is_built()
    if not cuda.is_built():
        assert info["reason"].startswith("cnnkit was built without CUDA")
        return
    from cnnkit import _cuda

    assert info["architectures"] == _cuda.architectures.split() and info["architectures"]
    assert info["runtime_version"].count(".") == 1
    assert info["ops"] == cuda.supported_ops() and "relu" in info["ops"]
    assert len(info["devices"]) == cuda.device_count()


@needs_no_gpu
def test_info_command_prints_the_cuda_build_and_why_no_device(capsys):
    from cnnkit import cli

    cli.main(["info"])
    out = capsys.readouterr().out
    if cuda.is_built():
        assert "CUDA: built for" in out and "ops with CUDA kernels" in out
        assert f"no usable device: {cuda.unavailable_reason()}" in out
    else:
        assert "CUDA: not built" in out


def test_importing_cnnkit_loads_neither_the_cuda_module_nor_the_ops():
    code = ("import sys, numpy as np, cnnkit; cnnkit.functional.relu(np.zeros(3, np.float32)); "
            "m = cnnkit.nn.Linear(2, 2); m.state_dict(); "
            "assert 'cnnkit._cuda' not in sys.modules and 'cnnkit.cuda.ops_act' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the ops modules -------------------------------------------------------------------


@pytest.mark.skipif(not cuda.is_built(), reason="cnnkit was built without the CUDA module")
def test_every_cuda_op_is_a_functional_op_with_its_signature():
    assert cuda.supported_ops(), "the ops modules define no op"
    for name in cuda.supported_ops():
        twin = cuda._ops()[name]
        assert name in F.__all__, f"cnnkit.cuda.{twin.__module__}.{name} has no cnnkit.functional twin"
        assert inspect.signature(twin) == inspect.signature(getattr(F, name)), name


# -- dispatch ----------------------------------------------------------------------------


@needs_no_gpu
def test_a_cuda_array_without_a_usable_gpu_says_why():
    with pytest.raises(RuntimeError, match="relu: input is a CUDA array, but cnnkit cannot run on the GPU here: "
                                           + re.escape(cuda.unavailable_reason().split(":")[0])):
        F.relu(FakeCudaArray((2, 3)))


def test_a_call_with_cuda_arguments_goes_to_the_twin_with_its_arguments(fake_gpu):
    calls = []

    def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, algo="auto"):
        calls.append((input, weight, bias, stride, padding, algo))
        return "from the twin"

    fake_gpu["conv2d"] = conv2d
    x, w = FakeCudaArray((1, 1, 5, 5)), FakeCudaArray((2, 1, 3, 3))
    assert F.conv2d(x, w, None, 2, padding=1, algo="direct") == "from the twin"
    assert calls == [(x, w, None, 2, 1, "direct")]


def test_numpy_calls_never_reach_the_cuda_ops(fake_gpu):
    fake_gpu["relu"] = lambda input: pytest.fail("a NumPy call was sent to CUDA")
    x = np.array([-1.0, 2.0], np.float32)
    np.testing.assert_array_equal(F.relu(x), [0.0, 2.0])


def test_an_op_without_a_cuda_kernel_is_named(fake_gpu):
    with pytest.raises(NotImplementedError, match="local_response_norm has no CUDA kernel"):
        F.local_response_norm(FakeCudaArray((1, 4, 3, 3)), 3)


def test_a_cpu_array_beside_a_cuda_one_names_both(fake_gpu):
    fake_gpu["relu_backward"] = lambda grad_output, input: pytest.fail("mixed devices reached the op")
    g = FakeCudaArray((2, 2), device=1)
    with pytest.raises(ValueError, match="relu_backward: grad_output is on cuda:1 but input is a NumPy array on "
                                         "the CPU"):
        F.relu_backward(g, np.zeros((2, 2), np.float32))
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="input is a torch.Tensor on the CPU"):
        F.relu_backward(g, torch.zeros(2, 2))


def test_arrays_on_two_cuda_devices_name_both(fake_gpu):
    with pytest.raises(ValueError, match="linear: input is on cuda:0 but bias is on cuda:1"):
        F.linear(FakeCudaArray((2, 3)), FakeCudaArray((4, 3)), bias=FakeCudaArray((4,), device=1))


def test_scalars_and_none_beside_cuda_arrays_are_not_devices(fake_gpu):
    fake_gpu["cross_entropy_backward"] = lambda *args, **kwargs: "ok"
    x = FakeCudaArray((4, 3))
    assert F.cross_entropy_backward(x, FakeCudaArray((4,)), np.float32(2.0), weight=None,
                                     reduction="sum") == "ok"


# -- argument checks (PyTorch CPU tensors stand in for the caller's library) ---------------


def test_checks_follow_the_functional_dtype_policy():
    torch = pytest.importorskip("torch")
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert _checks.float32(x, "op", "input") is x
    converted = _checks.float32(x.double().t(), "op", "input")
    assert converted.dtype == torch.float32 and converted.is_contiguous()
    np.testing.assert_array_equal(converted.numpy(), x.numpy().T)
    assert _checks.float32(torch.tensor([1, 2]), "op", "input").dtype == torch.float32
    with pytest.raises(TypeError, match="op: input must be a float or integer array, got dtype bool"):
        _checks.float32(torch.tensor([True]), "op", "input")
    assert _checks.labels(torch.tensor([1, 2], dtype=torch.int32), "op", "target").dtype == torch.int64
    with pytest.raises(TypeError, match="op: target must be an integer array of class indices"):
        _checks.labels(torch.tensor([1.0]), "op", "target")


def test_checks_of_arrays_written_in_place_never_convert():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="bn: running_mean must be float32 to be updated in place, got float64"):
        _checks.state(torch.zeros(3, dtype=torch.float64), "bn", "running_mean", (3,))
    with pytest.raises(ValueError, match=r"bn: running_var must have shape \(3,\), got \(4,\)"):
        _checks.state(torch.zeros(4), "bn", "running_var", (3,))
    with pytest.raises(ValueError, match="C-contiguous"):
        _checks.state(torch.zeros(3, 2).t(), "bn", "running_var", (2, 3))
    with pytest.raises(ValueError, match=r"op: input must be 4-D \(NCHW\), got shape \(2, 3\)"):
        _checks.ndim(torch.zeros(2, 3), 4, "op", "input", "NCHW")
    with pytest.raises(ValueError, match=r"op: grad_output has shape \(2,\), expected input's \(3,\)"):
        _checks.same_shape(torch.zeros(3), torch.zeros(2), "op", "input", "grad_output")


# -- moving models -------------------------------------------------------------------------


@needs_no_gpu
def test_moving_a_model_to_cuda_without_a_gpu_says_why_and_changes_nothing():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    before = model.state_dict()
    for move in (lambda: model.to("cuda"), lambda: model.cuda(), lambda: model.to("cuda:1"), lambda: model.to(0)):
        with pytest.raises(RuntimeError, match="cannot move to cuda(:[01])?: " + cuda.unavailable_reason()[:20]):
            move()
    assert all(type(p.data) is np.ndarray for p in model.parameters())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_bad_devices_are_refused():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        model.to("tpu")
    with pytest.raises(ValueError, match="got 'cuda:x'"):
        model.to("cuda:x")
    with pytest.raises(TypeError, match="device must be"):
        model.to(1.5)
    with pytest.raises(ValueError, match="library='torch' chooses the array library of a CUDA device"):
        model.to("cpu", library="torch")
    assert model.to("cpu") is model and model.cpu() is model


@needs_no_gpu
def test_train_command_on_cuda_without_a_gpu_exits_with_the_reason(tmp_path):
    from cnnkit import cli

    with pytest.raises(SystemExit, match="cnnkit: --device cuda: cannot move to cuda: "):
        cli.main(["train", "--device", "cuda", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")])


# -- a stand-in device: PyTorch CPU tensors treated as CUDA arrays -------------------------
# Everything between the layers and the kernels (Module.to, gradients, optimizers, fit, state
# dicts) runs here on arrays of a library other than NumPy, exactly as on a GPU; the "kernels" are
# the CPU ops, called on the tensors' NumPy views.


@pytest.fixture
def standin(monkeypatch, fake_gpu):
    torch = pytest.importorskip("torch")
    is_torch = _device._is_torch
    monkeypatch.setattr(_device, "is_cuda_array", lambda x: is_torch(x))
    monkeypatch.setattr(_device, "device_index", lambda x: 0)
    monkeypatch.setattr(_device, "array_library", lambda library=None: "torch")
    monkeypatch.setattr(_device, "to_host", lambda x: x.detach().numpy().copy() if is_torch(x) else np.asarray(x))
    monkeypatch.setattr(_device, "to_device", lambda x, device, library: x if is_torch(x) else torch.from_numpy(
        np.array(x, copy=True)))
    monkeypatch.setattr(cuda, "device_count", lambda: 1)

    def on_device(value, op, name):
        raise _arrays._OnCuda

    monkeypatch.setitem(_arrays._KINDS, torch.Tensor, (on_device, None))  # the dispatch sees "CUDA" tensors
    # No real fused optimizer kernels on CPU tensors: the optimizers' namespace code runs instead.
    monkeypatch.setitem(sys.modules, "cnnkit.cuda.ops_optim", None)
    monkeypatch.delattr(cuda, "ops_optim", raising=False)

    def twin(op):
        def run(*args, **kwargs):
            plain = [a.numpy() if is_torch(a) else a for a in args]
            named = {k: v.numpy() if is_torch(v) else v for k, v in kwargs.items()}
            result = op(*plain, **named)
            back = [torch.from_numpy(r) if isinstance(r, np.ndarray) else r
                    for r in (result if isinstance(result, tuple) else (result,))]
            return tuple(back) if isinstance(result, tuple) else back[0]
        return run

    for name in F.__all__:
        fake_gpu[name] = twin(getattr(F, name).__wrapped__)
    return torch


def _lenet_pair(seed=0):
    cnnkit.manual_seed(seed)
    host = cnnkit.models.lenet5()
    dev = cnnkit.models.lenet5()
    dev.load_state_dict(host.state_dict())
    return host, dev


@pytest.mark.parametrize("make", [
    lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: optim.Adam(p, lr=1e-3, amsgrad=True, l1_decay=1e-4),
    lambda p: optim.AdamW(p, lr=1e-3),
    lambda p: optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True),
    lambda p: optim.Adagrad(p, lr=1e-2, weight_decay=1e-3),
    lambda p: optim.Adadelta(p),
], ids=["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta"])
def test_a_model_trains_on_the_device_as_on_the_cpu(standin, make):
    torch = standin
    host, dev = _lenet_pair()
    opt_host = make(host.parameters())
    opt_dev = make(dev.parameters())  # made before the move: the parameters stay the same objects
    dev.to("cuda")
    assert all(isinstance(p.data, torch.Tensor) for p in dev.parameters())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    history = {}
    for name, model, opt in (("host", host, opt_host), ("dev", dev, opt_dev)):
        cnnkit.manual_seed(3)
        history[name] = cnnkit.train.fit(model, nn.CrossEntropyLoss(), opt, (x, y), epochs=2, batch_size=16,
                                         verbose=0).history
    assert all(isinstance(p.data, torch.Tensor) and isinstance(p.grad, torch.Tensor) for p in dev.parameters())
    np.testing.assert_allclose(history["dev"]["loss"], history["host"]["loss"], rtol=1e-5)
    state_host, state_dev = host.state_dict(), dev.state_dict()
    for key in state_host:
        assert type(state_dev[key]) is np.ndarray
        np.testing.assert_allclose(state_dev[key], state_host[key], rtol=1e-4, atol=1e-6, err_msg=key)
    saved = opt_dev.state_dict()
    assert all(type(v) is np.ndarray for s in saved["state"].values() for v in s.values() if not np.isscalar(v))
    opt_dev.load_state_dict(saved)
    assert all(isinstance(v, torch.Tensor) for s in opt_dev._state.values() for v in s.values()
               if not isinstance(v, int))


def test_a_resnet_with_batch_norm_buffers_trains_on_the_device_as_on_the_cpu(standin):
    torch = standin
    cnnkit.manual_seed(5)
    host = cnnkit.models.resnet(8, width=4)
    dev = cnnkit.models.resnet(8, width=4)
    dev.load_state_dict(host.state_dict())
    dev.to("cuda")
    assert all(isinstance(b, torch.Tensor) for _, b in dev.named_buffers())
    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    for model in (host, dev):
        cnnkit.manual_seed(7)
        cnnkit.train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                         (x, y), epochs=1, batch_size=8, verbose=0)
    assert all(isinstance(b, torch.Tensor) for _, b in dev.named_buffers())
    state_host, state_dev = host.state_dict(), dev.state_dict()
    assert state_dev["1.num_batches_tracked"] == 2
    for key in state_host:
        np.testing.assert_allclose(state_dev[key], state_host[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_concat_and_join_branches_run_on_the_device_as_on_the_cpu(standin):
    torch = standin

    def build():
        cnnkit.manual_seed(8)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Concat(nn.Identity(), nn.Conv2d(4, 2, 3, padding=1)),
                             nn.Join(nn.Conv2d(6, 3, 1), nn.Conv2d(6, 3, 1)), nn.Flatten(), nn.Linear(3 * 8 * 8, 5))

    host, dev = build(), build().to("cuda")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    g = rng.standard_normal((2, 5)).astype(np.float32)
    out_host, out_dev = host(x), dev(torch.from_numpy(x))
    assert isinstance(out_dev, torch.Tensor)
    np.testing.assert_allclose(out_dev.numpy(), out_host, rtol=1e-6, atol=1e-6)
    dx_host, dx_dev = host.backward(g), dev.backward(torch.from_numpy(g))
    assert isinstance(dx_dev, torch.Tensor)
    np.testing.assert_allclose(dx_dev.numpy(), dx_host, rtol=1e-5, atol=1e-6)
    for (name, p_host), p_dev in zip(host.named_parameters(), dev.parameters()):
        np.testing.assert_allclose(p_dev.grad.numpy(), p_host.grad, rtol=1e-5, atol=1e-6, err_msg=name)


def test_evaluate_predict_and_state_dicts_of_a_device_model(standin):
    torch = standin
    host, dev = _lenet_pair()
    dev.to("cuda")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 20)
    assert cnnkit.train.evaluate(dev, nn.CrossEntropyLoss(), (x, y), batch_size=8) == pytest.approx(
        cnnkit.train.evaluate(host, nn.CrossEntropyLoss(), (x, y), batch_size=8), rel=1e-6)
    out = cnnkit.train.predict(dev, x, batch_size=8)
    assert type(out) is np.ndarray
    np.testing.assert_allclose(out, cnnkit.train.predict(host, x, batch_size=8), rtol=1e-6, atol=1e-6)
    # Loading a state dict into a device model writes into its device arrays.
    other = cnnkit.models.lenet5().to("cuda")
    before = [id(p.data) for p in other.parameters()]
    other.load_state_dict(host.state_dict())
    assert [id(p.data) for p in other.parameters()] == before
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, host.state_dict()[key])
    with open(os.devnull, "w") as sink:
        rows = dev.summary((1, 28, 28), file=sink)
        assert [r[:4] for r in rows] == [r[:4] for r in host.summary((1, 28, 28), file=sink)]
    # And back: NumPy arrays again.
    dev.cpu()
    assert all(type(p.data) is np.ndarray for p in dev.parameters())


class _FusedSteps:
    """A stand-in ``cnnkit.cuda.ops_optim`` that records its calls and applies plain SGD."""

    def __init__(self):
        self.calls = []

    def _record(self, name, param, grad, *arrays, **options):
        self.calls.append((name, param, arrays, options))
        param -= options["lr"] * grad

    def __getattr__(self, name):
        if name.endswith("_step"):
            return lambda *args, **kwargs: self._record(name, *args, **kwargs)
        raise AttributeError(name)


@pytest.mark.parametrize("make, step, arrays", [
    (lambda p: optim.SGD(p, lr=0.5, momentum=0.9, nesterov=True, l1_decay=0.1), "sgd_step", 1),
    (lambda p: optim.Adam(p, lr=0.5, amsgrad=True), "adam_step", 3),
    (lambda p: optim.AdamW(p, lr=0.5), "adam_step", 2),
    (lambda p: optim.RMSprop(p, lr=0.5, centered=True), "rmsprop_step", 2),
    (lambda p: optim.Adagrad(p, lr=0.5, initial_accumulator_value=0.25), "adagrad_step", 1),
], ids=["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_device_parameters_are_updated_by_the_fused_steps_of_ops_optim(standin, monkeypatch, make, step, arrays):
    torch = standin
    fused = _FusedSteps()
    monkeypatch.setitem(sys.modules, "cnnkit.cuda.ops_optim", fused)
    monkeypatch.setattr(cuda, "ops_optim", fused, raising=False)
    model = nn.Linear(3, 2).to("cuda")
    opt = make(model.parameters())
    before = [p.data.clone() for p in model.parameters()]
    for _ in range(2):
        for p in model.parameters():
            p.grad = torch.ones_like(p.data)
        opt.step()
    assert [c[0] for c in fused.calls] == [step] * 4
    assert [c[1] for c in fused.calls[:2]] == [p.data for p in model.parameters()]
    for p, b in zip(model.parameters(), before):  # the stand-in's update, and no other
        np.testing.assert_allclose(p.data.numpy(), b.numpy() - 1.0, rtol=1e-6)
    name, _, state_arrays, options = fused.calls[2]
    given = [a for a in state_arrays if a is not None]
    assert len(given) == arrays and all(isinstance(a, torch.Tensor) for a in given)
    assert options["lr"] == 0.5 and options["l1_decay"] == opt.param_groups[0]["l1_decay"]
    if step == "sgd_step":
        assert fused.calls[0][3]["first"] and not options["first"] and options["nesterov"]
    elif step == "adam_step":
        assert options["step"] == 2 and options["decoupled"] is isinstance(opt, optim.AdamW)
    elif step == "adagrad_step":
        assert options["step"] == 2 and bool((state_arrays[0] == 0.25).all())  # the stand-in leaves it


def test_without_fused_steps_the_namespace_code_updates_device_parameters(standin):
    torch = standin
    model = nn.Linear(3, 2).to("cuda")
    opt = optim.Adadelta(model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p.data)
    before = [p.data.clone() for p in model.parameters()]
    opt.step()
    assert all(isinstance(v, torch.Tensor) for v in opt._state[id(model.weight)].values() if not isinstance(v, int))
    assert all(not torch.equal(p.data, b) for p, b in zip(model.parameters(), before))


# -- the device-parametrised test pattern (tests/devices.py) on the stand-in device ------------


def test_poisoned_outputs_start_as_nan_or_the_integer_maximum():
    torch = pytest.importorskip("torch")
    like = torch.zeros(1)
    _device.poison_outputs(True)
    try:
        floats, ints = _device.empty((2, 3), like), _device.empty((4,), like, "int64")
    finally:
        _device.poison_outputs(False)
    assert floats.dtype == torch.float32 and torch.isnan(floats).all()
    assert ints.dtype == torch.int64 and (ints == np.iinfo(np.int64).max).all()


def test_device_call_moves_arguments_and_results_and_writes_back_updates(standin):
    from devices import Device

    torch = standin
    gpu = Device("cuda")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    sent = []
    real = cuda._ops()["batch_norm"]
    cuda._ops()["batch_norm"] = lambda *a, **k: sent.append(a) or real(*a, **k)
    out = gpu.call(F.batch_norm, x, rm, rv, training=True, momentum=0.5)
    assert all(isinstance(a, torch.Tensor) for a in sent[0][:3])
    want_rm, want_rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    want = F.batch_norm(x, want_rm, want_rv, training=True, momentum=0.5)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(rm, want_rm)
    np.testing.assert_array_equal(rv, want_rv)


# -- cnnkit bench --device cuda ----------------------------------------------------------------


@needs_no_gpu
def test_cuda_bench_without_a_gpu_exits_with_the_reason():
    from cnnkit import cli

    with pytest.raises(SystemExit, match="cnnkit bench --device cuda: no usable CUDA device: "):
        cli.main(["bench", "--device", "cuda"])
    with pytest.raises(SystemExit, match="unknown CUDA suite 'pool'"):
        cli.main(["bench", "--device", "cuda", "pool"])


class _HostEvents:
    """torch.cuda's Event API over the host clock, to check the CUDA timer's bookkeeping."""

    class cuda:
        class Event:
            def __init__(self, enable_timing):
                self.t = None

            def record(self):
                import time

                self.t = time.perf_counter()

            def synchronize(self):
                pass

            def elapsed_time(self, end):
                return (end.t - self.t) * 1e3


def test_cuda_timer_reports_medians_per_call():
    import time

    from cnnkit import bench_cuda

    order = []

    def slow():
        order.append("slow")
        time.sleep(0.002)

    def fast():
        order.append("fast")

    times = bench_cuda.cuda_timings(_HostEvents, {"slow": slow, "fast": fast}, rounds=3, sample_time=0.01,
                                    settle_time=0.0)
    assert 0.002 <= times["slow"] < 0.02 and times["fast"] < 0.001
    # Warm-up and one timed call each, then the rounds: several calls per sample for the fast one.
    assert order.count("fast") > order.count("slow") > 3


def test_cuda_bench_reports_a_missing_kernel_and_goes_on():
    from cnnkit import bench_cuda

    rows = bench_cuda._Rows(_HostEvents, 1, bandwidth=1e9)

    def missing():
        raise NotImplementedError("max_pool2d has no CUDA kernel in cnnkit yet")

    row = rows.time("ops", "max_pool", missing, lambda: None)
    assert row["missing"].startswith("max_pool2d has no CUDA kernel")
    row = rows.time("ops", "copy", lambda: None, lambda: None, nbytes=1000)
    assert row["ratio"] > 0 and "copy_fraction" in row
    table = bench_cuda._targets_table(rows)
    assert [t[0] for t in table] == [t[0] for t in bench_cuda.TARGETS]
    assert table[2][3] == row["copy_fraction"]["cnnkit"] and table[0][3] is None


def test_train_command_on_the_device_trains_saves_and_plots(standin, tmp_path, capsys):
    import json

    from cnnkit import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--device", "cuda", "--epochs", "1", "--quiet", "--lr-step", "0",
                     "--out", str(out)]) == 0
    assert "on cuda" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["args"]["device"] == "cuda" and run["test_accuracy"] > 0.5
    weights = cnnkit.load(str(out / "weights.safetensors"))
    assert weights.keys() == cnnkit.models.lenet5().state_dict().keys()
    assert (out / "history.json").exists()


def test_a_model_on_the_device_is_refused_by_compile_inference_and_compiles_back_on_the_cpu(standin):
    host, dev = _lenet_pair()
    dev.to("cuda").eval()
    with pytest.raises(ValueError, match="compile_inference: .* on a GPU"):
        dev.compile_inference((1, 28, 28))
    plan = dev.cpu().compile_inference((1, 28, 28))
    x = np.random.default_rng(4).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(plan(x), host.eval()(x), rtol=1e-4, atol=1e-5)

"""Native inference plans (cnnkit.plan): against the float64 oracle and the layer-by-layer path."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import models, nn
from cnnkit import reference as ref
from cnnkit import functional as F
from tolerance import assert_close, assert_exact

ALGOS = ["kernel", "gemm", "direct", "winograd", "measure"]


# -- the oracle: the model in float64, and the same model on |x| with |parameters| ------------
def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _bn_affine(m):
    scale = np.asarray(m.weight.data, np.float64) / np.sqrt(np.asarray(m.running_var, np.float64) + m.eps)
    shift = np.asarray(m.bias.data, np.float64) - np.asarray(m.running_mean, np.float64) * scale
    return scale, shift


_ACT = {nn.ReLU: ref.relu, nn.Tanh: ref.tanh, nn.Sigmoid: ref.sigmoid, nn.ReLU6: ref.relu6,
        nn.LeakyReLU: ref.leaky_relu, nn.ELU: ref.elu, nn.Softplus: ref.softplus}


def oracle(m, x, absolute=False):
    """``m`` applied to float64 ``x`` with reference.py; with ``absolute``, every parameter and
    affine term by its magnitude and activations by the identity (+1 for sigmoid): a bound A on
    the magnitudes that rounding scales with."""
    f = np.abs if absolute else (lambda a: a)
    t = type(m)
    if t is nn.Sequential:
        for child in m:
            x = oracle(child, x, absolute)
        return x
    if t is nn.Residual:
        return oracle(m.body, x, absolute) + oracle(m.shortcut, x, absolute)
    if t in (nn.Identity, nn.Dropout):
        return x
    if t is nn.Conv2d:
        stride, dilation = _pair(m.stride), _pair(m.dilation)
        padding = F._conv_padding(m.padding, tuple(m.kernel_size), stride, dilation)
        b = None if m.bias is None else f(m.bias.data)
        return ref.conv2d(x, f(m.weight.data), b, stride, padding, dilation, m.groups)
    if t is nn.Linear:
        return ref.linear(x, f(m.weight.data), None if m.bias is None else f(m.bias.data))
    if t in (nn.BatchNorm2d, nn.BatchNorm1d):
        scale, shift = _bn_affine(m)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * f(scale).reshape(shape) + f(shift).reshape(shape)
    if t in _ACT:
        if absolute:
            return x + 1.0 if t is nn.Sigmoid else x
        return _ACT[t](x, m.negative_slope) if t is nn.LeakyReLU else _ACT[t](x)
    if t is nn.MaxPool2d:
        return ref.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)[0]
    if t is nn.AvgPool2d:
        return ref.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)
    if t is nn.AdaptiveAvgPool2d:
        oh, ow = _pair(m.output_size)
        return ref.adaptive_avg_pool2d(x, oh, ow)
    if t is nn.Flatten:
        return x.reshape(x.shape[0], -1)
    if t is nn.LocalResponseNorm:
        return x / m.k**m.beta if absolute else ref.local_response_norm(x, m.size, m.alpha, m.beta, m.k)
    raise TypeError(t.__name__)


def reductions(m):
    """sqrt of each conv/linear reduction length, summed: rounding errors add up layer by layer."""
    total = 0.0
    for mod in m.modules():
        if type(mod) is nn.Conv2d:
            kh, kw = mod.kernel_size
            total += np.sqrt(mod.in_channels // mod.groups * kh * kw) + 2  # + folding and epilogue roundings
        elif type(mod) is nn.Linear:
            total += np.sqrt(mod.in_features) + 2
        elif type(mod) in (nn.BatchNorm2d, nn.BatchNorm1d, nn.LocalResponseNorm, nn.AvgPool2d, nn.AdaptiveAvgPool2d):
            total += 4
    return max(total, 1.0) ** 2


def last_layer_scale(model, x64):
    """The largest output magnitude the last conv or linear layer could give without cancelling in
    its own sums: the exact values up to that layer, then magnitudes (``oracle``'s absolute) from it."""
    children = list(model) if type(model) is nn.Sequential else [model]
    last = max((i for i, c in enumerate(children) if type(c) in (nn.Conv2d, nn.Linear)), default=0)
    h = x64
    for i, child in enumerate(children):
        h = oracle(child, h, absolute=i >= last)
    return np.abs(h).max()


def check_against_oracle(model, x, got, op="plan"):
    x64 = np.asarray(x, np.float64)
    expected = oracle(model, x64)
    assert_close(got, expected, oracle(model, np.abs(x64), absolute=True), reductions(model), op)
    # A is loose for deep networks (it grows through |W| without cancellation): a folding or
    # fusion mistake must not hide under it, so the error is also held to the outputs' own scale,
    # taken before the last layer's sums cancel (Linear(20 -> 1) can sum to 1e-3 of its terms).
    scale = max(np.abs(expected).max(), last_layer_scale(model, x64))
    assert np.abs(got - expected).max() <= 1e-4 * scale + 1e-30, f"{op}: off by more than 1e-4 of max |y|"


def randomize(model, rng, integer=False):
    """Random parameters and batch-norm statistics (small integers with ``integer``)."""
    for m in model.modules():
        for p in m._parameters.values():
            if p is not None:
                if integer:
                    p.data[...] = rng.integers(-2, 3, p.data.shape)
                else:
                    p.data[...] = rng.normal(0, 1 / np.sqrt(max(p.data[0].size, 1)), p.data.shape)
        if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
            m.running_mean[:] = rng.normal(0, 0.5, m.num_features)
            m.running_var[:] = rng.uniform(0.5, 2.0, m.num_features)
            m.weight.data[:] = rng.uniform(0.5, 1.5, m.num_features)
    return model.eval()


# -- random small architectures ------------------------------------------------------------
ACTS = [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.ReLU6]


@st.composite
def architectures(draw, allow_bn=True, allow_avg=True, acts=tuple(ACTS)):
    c = draw(st.integers(1, 5))
    h = draw(st.integers(4, 11))
    w = draw(st.integers(4, 11))
    shape = (c, h, w)
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "residual", "pool"]))
        if kind == "pool" and min(h, w) >= 2:
            if allow_avg and draw(st.booleans()):
                layers.append(nn.AvgPool2d(2))
            else:
                layers.append(nn.MaxPool2d(2, stride=draw(st.sampled_from([1, 2]))))
                h, w = (h - 2) // layers[-1].stride + 1, (w - 2) // layers[-1].stride + 1
                continue
            h, w = h // 2, w // 2
        elif kind == "residual":
            body = [nn.Conv2d(c, c, 3, padding=1, bias=False)]
            if allow_bn:
                body.append(nn.BatchNorm2d(c))
            body += [nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=not allow_bn)]
            if allow_bn:
                body.append(nn.BatchNorm2d(c))
            shortcut = None
            if draw(st.booleans()):
                shortcut = nn.Conv2d(c, c, 1)
            layers.append(nn.Residual(nn.Sequential(*body), shortcut))
            if draw(st.booleans()):
                layers.append(nn.ReLU())
        else:
            out = draw(st.sampled_from([1, 3, 7, 8, 9, 16, 17]))
            k = draw(st.integers(1, min(3, h, w)))
            stride = draw(st.integers(1, 2))
            pad = draw(st.integers(0, k // 2))
            groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0 and out % g == 0]))
            bn = allow_bn and draw(st.booleans())
            layers.append(nn.Conv2d(c, out, k, stride=stride, padding=pad, groups=groups, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(out))
            if draw(st.booleans()):
                layers.append(draw(st.sampled_from(acts))())
            c, h, w = out, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    if draw(st.booleans()):
        if allow_avg and min(h, w) >= 2 and draw(st.booleans()):
            h = w = draw(st.sampled_from([1, 2]))
            layers.append(nn.AdaptiveAvgPool2d(h))
        layers += [nn.Flatten(), nn.Linear(c * h * w, draw(st.sampled_from([1, 10, 16])))]
        if draw(st.booleans()):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers), shape


@given(arch=architectures(), batch=st.sampled_from([1, 2, 5]), algo=st.sampled_from(ALGOS),
       seed=st.integers(0, 2**31 - 1))
def test_random_architectures_match_the_oracle_and_the_layers(isa, threads, arch, batch, algo, seed):
    model, shape = arch
    rng = np.random.default_rng(seed)
    randomize(model, rng)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    layers = model(x)
    plan = model.compile_inference(shape, conv_algo=algo)
    try:
        got = plan(x)
        assert got.shape == layers.shape
        check_against_oracle(model, x, got)
        # The plan and the layer-by-layer path are each within the rule of the oracle, so of each other twice over.
        x64 = np.abs(np.asarray(x, np.float64))
        assert_close(got, layers, oracle(model, x64, absolute=True), reductions(model), "plan vs layers", c=16)
        # Calling again (buffers reused, the measured choice made) gives the same bits.
        np.testing.assert_array_equal(plan(x), got)
    finally:
        plan.release()


# Only ReLU and ReLU6: the other activations (leaky_relu's 0.01 too) round.
@given(arch=architectures(allow_bn=False, allow_avg=False, acts=(nn.ReLU, nn.ReLU6)), batch=st.sampled_from([1, 3]),
       algo=st.sampled_from(ALGOS), seed=st.integers(0, 2**31 - 1))
def test_integer_fills_are_exact(isa, arch, batch, algo, seed):
    model, shape = arch
    rng = np.random.default_rng(seed)
    randomize(model, rng, integer=True)
    x = rng.integers(-3, 4, (batch, *shape)).astype(np.float32)
    expected = oracle(model, np.asarray(x, np.float64))
    if np.abs(expected).max() >= 2**22:
        return  # sums this large may round in float32
    # Winograd (which "measure" may pick) sums up to 36 times the magnitude A of the direct sums
    # before its exact scale by 1/4: exact while that stays below 2**24.
    if algo in ("winograd", "measure") and oracle(model, np.abs(np.asarray(x, np.float64)), absolute=True).max() >= 2**18:
        return
    plan = model.compile_inference(shape, conv_algo=algo)
    try:
        assert_exact(plan(x), expected, "plan integer fill")
    finally:
        plan.release()


# -- folding and the fused epilogues, one by one ----------------------------------------------
def _run(model, shape, batch=3, algo="kernel", seed=0):
    rng = np.random.default_rng(seed)
    randomize(model, rng)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    plan = model.compile_inference(shape, conv_algo=algo)
    try:
        got = plan(x)
        check_against_oracle(model, x, got)
        return plan.describe()
    finally:
        plan.release()


@pytest.mark.parametrize("algo", ALGOS)
def test_batch_norm_folds_into_the_conv_before_it(isa, algo):
    text = _run(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)), (3, 9, 9), algo=algo)
    assert text.count("\n") == 1 and "conv2d" in text and "0+1" in text


def test_batch_norm_folds_into_a_conv_without_bias():
    text = _run(nn.Sequential(nn.Conv2d(4, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU()), (4, 7, 7))
    assert text.count("\n") == 1 and "+bias +act" in text


# Compiling knows only the heuristic's pick for a shape algo="auto" has not measured: the Kernel
# way's first run measures the candidates on the plan's values (the autotune cache gains the
# layer's entry, batch and all) and the plan runs the winner, as a layer-by-layer call would.
@pytest.mark.parametrize("algo", ["kernel", "measure"])
def test_the_kernel_way_runs_what_autotune_measured(isa, autotune, algo):
    text = _run(nn.Sequential(nn.Conv2d(32, 64, 5, padding=2), nn.ReLU()), (32, 14, 14), batch=2, algo=algo)
    chosen = [impl for call, impl in cnnkit.autotune.entries().items()
              if call.startswith("conv2d forward 2 32 14 14 64 5 5 ")]
    assert len(chosen) == 1
    if algo == "kernel":
        assert f"[{chosen[0]}" in text


def test_batch_norm1d_folds_into_the_linear_before_it():
    text = _run(nn.Sequential(nn.Flatten(), nn.Linear(12, 9), nn.BatchNorm1d(9)), (3, 2, 2))
    assert text.count("\n") == 1 and "linear" in text


def test_a_batch_norm_after_no_conv_is_one_affine_pass_with_its_activation():
    text = _run(nn.Sequential(nn.MaxPool2d(2), nn.BatchNorm2d(3), nn.ReLU()), (3, 6, 6))
    assert "channel_affine +act" in text


@pytest.mark.parametrize("act", ACTS + [nn.Softplus])
@pytest.mark.parametrize("algo", ["kernel", "gemm"])
def test_each_activation_fuses_into_the_conv(isa, act, algo):
    text = _run(nn.Sequential(nn.Conv2d(2, 17, 3, padding=1), act()), (2, 6, 5), algo=algo)
    assert text.count("\n") == 1 and "+act" in text


@pytest.mark.parametrize("algo", ["kernel", "gemm"])
@pytest.mark.parametrize("then_relu", [False, True])
@pytest.mark.parametrize("projection", [False, True])
def test_the_residual_add_fuses_into_the_last_conv_of_the_body(isa, algo, then_relu, projection):
    body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    layers = [nn.Residual(body, nn.Conv2d(8, 8, 1) if projection else None)] + ([nn.ReLU()] if then_relu else [])
    text = _run(nn.Sequential(*layers), (8, 5, 5), algo=algo)
    assert text.count("\n") == 2 + projection and "+residual" in text
    assert ("+residual(v0) +act" in text) == (then_relu and not projection)


@pytest.mark.parametrize("act, moves", [(nn.ReLU, True), (nn.ReLU6, True), (lambda: nn.LeakyReLU(0.1), True),
                                       (lambda: nn.LeakyReLU(-0.5), False), (nn.Tanh, False)])
@pytest.mark.parametrize("algo", ALGOS)
def test_a_non_decreasing_activation_moves_past_the_max_pool_after_it(isa, act, moves, algo):
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), act(), nn.MaxPool2d(2), nn.Conv2d(16, 4, 1))
    conv, pool, _ = _run(model, (3, 8, 9), algo=algo).splitlines()
    assert ("+act" in pool) == moves and ("+act" in conv) != moves
    if act is nn.Tanh:
        return
    # Small integers and a piecewise-linear activation: every path is exact, so the plan gives the
    # layer-by-layer bits.
    rng = np.random.default_rng(1)
    randomize(model, rng, integer=True)
    x = rng.integers(-3, 4, (2, 3, 8, 9)).astype(np.float32)
    plan = model.compile_inference((3, 8, 9), conv_algo=algo)
    try:
        np.testing.assert_array_equal(plan(x), model(x))
    finally:
        plan.release()


def test_a_residual_whose_body_ends_in_pooling_adds_in_its_own_pass():
    model = nn.Sequential(nn.Residual(nn.Sequential(nn.MaxPool2d(3, 1, 1)), None), nn.Tanh())
    text = _run(model, (2, 5, 5))
    assert "elementwise +residual(v0) +act" in text


def test_an_activation_on_a_value_read_twice_is_not_fused_into_its_producer():
    # The residual's input feeds the body (through a ReLU) and the shortcut (without one).
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Residual(nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 1))))
    text = _run(model, (3, 4, 4))
    assert text.splitlines()[0].endswith("(4, 4, 4)") and "+act" not in text.splitlines()[0]


def test_pools_lrn_and_linear_layers_run_natively():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LocalResponseNorm(3), nn.AvgPool2d(3, 2, 1, ceil_mode=True),
                          nn.AdaptiveAvgPool2d((3, 2)), nn.Flatten(), nn.Dropout(), nn.Linear(48, 5), nn.Sigmoid())
    _run(model, (3, 12, 11))
    _run(nn.Sequential(nn.LocalResponseNorm(4, alpha=0.5, beta=0.5, k=2.0)), (6, 3, 3))


# VGG's last blocks at batch 1: many channels on 4x4 and 2x2 planes, a GEMM of many weight rows
# against a few columns (the packed weights' case), then the classifier's linear layers.
@pytest.mark.parametrize("algo", ["gemm", "measure"])
@pytest.mark.parametrize("batch", [1, 3])
def test_small_planes_with_packed_weights_match_the_oracle(isa, threads, algo, batch):
    model = nn.Sequential(nn.Conv2d(40, 48, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(48, 33, 3, padding=1), nn.BatchNorm2d(33), nn.ReLU(),
                          nn.Flatten(), nn.Linear(33 * 4, 29), nn.ReLU(), nn.Linear(29, 10))
    text = _run(model, (40, 4, 4), batch=batch, algo=algo)
    if algo == "gemm":
        assert text.count("[batched_gemm]") == 2 and text.count("[packed_gemm]") == 2
    else:
        assert text.count("[") == 4  # every conv and linear op shows its measured choice


# conv_batched_gemm's column matrix holds at most 2**20 floats: a 64-channel 3x3 conv on 16x16
# takes 576 * 256 floats an image, so a batch of 9 runs as chunks of 7 and 2 images.
def test_a_large_batch_runs_the_gemm_in_chunks_of_images(isa):
    model = nn.Sequential(nn.Conv2d(64, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 3))
    text = _run(model, (64, 16, 16), batch=9, algo="gemm")
    assert text.count("[batched_gemm]") == 2


@pytest.mark.parametrize("algo", ["kernel", "gemm"])
def test_linear_layers_follow_the_choice_and_are_exact(isa, algo):
    rng = np.random.default_rng(5)
    model = randomize(nn.Sequential(nn.Flatten(), nn.Linear(70, 37), nn.ReLU(), nn.Linear(37, 15)), rng, integer=True)
    for batch in (1, 4):
        x = rng.integers(-3, 4, (batch, 7, 2, 5)).astype(np.float32)
        plan = model.compile_inference((7, 2, 5), conv_algo=algo)
        try:
            assert_exact(plan(x), oracle(model, np.asarray(x, np.float64)), "plan linear")
            assert plan.describe().count("[packed_gemm]" if algo == "gemm" else "[linear_forward]") == 2
        finally:
            plan.release()


# -- the zoo --------------------------------------------------------------------------------
ZOO = {
    "lenet5": (models.lenet5, (1, 28, 28)),
    "mnist_cnn": (lambda: models.mnist_cnn(hidden=64), (1, 28, 28)),
    "resnet8": (lambda: models.resnet(8, width=8), (3, 16, 16)),
    "vgg11": (lambda: models.vgg("vgg11", width_divisor=16), (3, 32, 32)),
    "alexnet": (lambda: models.alexnet(width=8, image_size=32), (3, 32, 32)),
}


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("batch", [1, 4])
def test_zoo_models_match_the_oracle_and_the_layers(threads, name, batch):
    build, shape = ZOO[name]
    rng = np.random.default_rng(batch)
    model = randomize(build(), rng)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    layers = model(x)
    plan = model.compile_inference(shape)
    try:
        got = plan(x)
        check_against_oracle(model, x, got, f"plan {name}")
        x64 = np.abs(np.asarray(x, np.float64))
        assert_close(got, layers, oracle(model, x64, absolute=True), reductions(model), "plan vs layers", c=16)
    finally:
        plan.release()


# -- the batch order: whole images per thread through the ops before the first linear layer ---
@pytest.mark.parametrize("algo", ["direct", "kernel"])
@given(arch=architectures(), batch=st.sampled_from([2, 3, 5]), seed=st.integers(0, 2**31 - 1))
def test_image_major_gives_the_bits_of_layer_major(isa, threads, algo, arch, batch, seed):
    """With the plan's direct kernel on every convolution it can run (or, conv_algo="kernel",
    the kernel a layer-by-layer call picks, image-major wherever it can run image by image), the
    two orders run the same kernels, one image at a time or the whole batch: the same bits,
    pools, residuals and activations included; and the default order (measured) gives them too."""
    model, shape = arch
    rng = np.random.default_rng(seed)
    randomize(model, rng)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    plans = [model.compile_inference(shape, conv_algo=algo, batch_order=order)
             for order in ("layer_major", "image_major", "measure")]
    try:
        layer_major, image_major, measured = (plan(x) for plan in plans)
        check_against_oracle(model, x, image_major, "plan image-major")
        np.testing.assert_array_equal(image_major, layer_major)
        np.testing.assert_array_equal(measured, layer_major)
        np.testing.assert_array_equal(plans[1](x), layer_major)
    finally:
        for plan in plans:
            plan.release()


@pytest.mark.parametrize("batch", [2, 5])
def test_a_first_layer_of_one_channel_runs_its_kernel_image_major(isa, threads, batch):
    """mnist_cnn's shape of first layer (one input channel, 5x5): conv_algo="kernel" with an
    image-major trunk runs the kernel conv2d picks (direct_rows with AVX2) image by image, and
    says so; the same bits as over the whole batch."""
    model = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 10))
    rng = np.random.default_rng(batch)
    randomize(model, rng)
    x = rng.standard_normal((batch, 1, 12, 12)).astype(np.float32)
    image_major = model.compile_inference((1, 12, 12), conv_algo="kernel", batch_order="image_major")
    layer_major = model.compile_inference((1, 12, 12), conv_algo="kernel", batch_order="layer_major")
    try:
        got = image_major(x)
        check_against_oracle(model, x, got, "plan image-major kernel")
        np.testing.assert_array_equal(got, layer_major(x))
        conv = image_major.describe().splitlines()[0]
        assert ": conv2d [" in conv and "image-major" in conv and "plan_direct" not in conv, conv
    finally:
        image_major.release()
        layer_major.release()


@pytest.mark.parametrize("batch", [2, 7])
def test_a_resnet_runs_image_major_up_to_its_classifier(isa, threads, batch):
    """resnet8: every conv is in the trunk, the adaptive pooling's output crosses to the linear
    layer, which runs over the whole batch."""
    build, shape = ZOO["resnet8"]
    rng = np.random.default_rng(batch)
    model = randomize(build(), rng)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    image_major = model.compile_inference(shape, conv_algo="direct", batch_order="image_major")
    layer_major = model.compile_inference(shape, conv_algo="direct", batch_order="layer_major")
    try:
        got = image_major(x)
        check_against_oracle(model, x, got, "plan image-major resnet8")
        np.testing.assert_array_equal(got, layer_major(x))
        lines = image_major.describe().splitlines()
        convs = [line for line in lines if ": conv2d" in line]
        if isa != "scalar":
            assert all("image-major" in line for line in convs)
        assert not any("image-major" in line for line in lines if "linear" in line)
        assert not any("image-major" in line for line in layer_major.describe().splitlines())
    finally:
        image_major.release()
        layer_major.release()


@pytest.mark.parametrize("batch_order", ["image_major", "measure"])
def test_an_image_major_trunk_gets_blocked_values_whatever_the_conv_choice(isa, threads, batch_order):
    """With each convolution's way measured (conv_algo="measure"), an image-major trunk still runs
    them all with the plan's direct kernel, so its values between them are blocked and bordered:
    asked for (batch_order="image_major", which measures no trunk convolution layer-major) and,
    measured, timed so against layer-major."""
    build, shape = ZOO["resnet8"]
    rng = np.random.default_rng(11)
    model = randomize(build(), rng)
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    laid_out = model.compile_inference(shape, batch_order=batch_order, value_layout="blocked")
    try:
        got = laid_out(x)
        check_against_oracle(model, x, got, f"plan {batch_order} blocked")
        np.testing.assert_array_equal(laid_out(x), got)
        lines = laid_out.describe().splitlines()
        if isa != "scalar" and any("image-major" in line for line in lines):
            assert any("[blocked, border 1]" in line for line in lines if ": conv2d" in line)
        if isa != "scalar" and batch_order == "image_major":
            assert all("image-major" in line for line in lines if ": conv2d" in line)
    finally:
        laid_out.release()


@pytest.mark.parametrize("name", ["vgg11", "resnet8", "alexnet"])
def test_a_profile_of_an_image_major_plan_leaves_it_running_image_major(threads, name):
    """A profile times each op layer-major, the trunk's convolutions the way the trunk runs them;
    the trunk keeps its direct kernels and their order for the image-major runs after it (where a
    measurement in the profile picked another way, their weights were once let go and the next run
    crashed; with Winograd among the orders, the bits changed)."""
    build, shape = ZOO[name]
    rng = np.random.default_rng(5)
    model = randomize(build(), rng)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    plan = model.compile_inference(shape, batch_order="image_major")
    try:
        first = plan(x)
        assert len(plan.profile(x)) == plan.num_ops
        for _ in range(2):
            np.testing.assert_array_equal(plan(x), first)
        check_against_oracle(model, x, first, f"plan image-major {name}")
    finally:
        plan.release()


# -- state: batch size, ISA cap, weights ------------------------------------------------------
def _small():
    return randomize(nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                                   nn.Linear(8 * 16, 3)), np.random.default_rng(0))


def test_batch_size_changes_reallocate_and_stay_correct():
    model = _small()
    plan = model.compile_inference((2, 4, 4))
    rng = np.random.default_rng(1)
    for batch in (1, 6, 2, 6, 0, 1):
        x = rng.standard_normal((batch, 2, 4, 4)).astype(np.float32)
        got = plan(x)
        assert got.shape == (batch, 3)
        if batch:
            check_against_oracle(model, x, got)
    out = np.empty((2, 3), np.float32)
    assert plan(x[:1].repeat(2, 0), out=out) is out
    plan.release()


def test_an_isa_cap_set_after_compiling_is_honoured():
    model = _small()
    plan = model.compile_inference((2, 4, 4))
    x = np.random.default_rng(2).standard_normal((3, 2, 4, 4)).astype(np.float32)
    previous = cnnkit.get_max_isa()
    try:
        plan(x)
        cnnkit.set_max_isa("scalar")
        got = plan(x)
        text = plan.describe()
        assert "direct_walk" not in text and "cvec" not in text and "plan_direct" not in text
        check_against_oracle(model, x, got)
    finally:
        cnnkit.set_max_isa(previous)
        plan.release()


def test_packed_weights_are_packed_again_after_an_isa_cap_change():
    # The GEMM path's weights are packed for the kernel of the cap at the first
    # call; a later cap selects another kernel, whose layout differs.
    model = _small()
    plan = model.compile_inference((2, 4, 4), conv_algo="gemm")
    x = np.random.default_rng(3).standard_normal((2, 2, 4, 4)).astype(np.float32)
    previous = cnnkit.get_max_isa()
    try:
        for cap in [previous, "scalar", previous]:
            cnnkit.set_max_isa(cap)
            check_against_oracle(model, x, plan(x))
    finally:
        cnnkit.set_max_isa(previous)
        plan.release()


def test_weights_are_read_only_while_a_plan_holds_them():
    model = _small()
    conv = model[0]
    plan = model.compile_inference((2, 4, 4))
    with pytest.raises(ValueError, match="read-only"):
        conv.weight.data[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        model[1].running_mean += 1.0
    with pytest.raises(RuntimeError, match="0.weight is read-only"):
        model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})
    plan.release()
    conv.weight.data[0] = 1.0  # writeable again
    with pytest.raises(RuntimeError, match="released"):
        plan(np.zeros((1, 2, 4, 4), np.float32))


@pytest.mark.parametrize("replace, message", [
    (lambda m: setattr(m[4].weight, "data", m[4].weight.data * 2), "Linear.weight"),
    (lambda m: setattr(m[0], "bias", nn.Parameter(m[0].bias.data * 2)), "Conv2d.bias"),
    (lambda m: setattr(m[1], "running_var", m[1].running_var * 2), "BatchNorm2d.running_var"),
], ids=["parameter data", "parameter object", "buffer"])
def test_a_replaced_parameter_makes_the_plan_refuse_to_run(replace, message):
    model = _small()
    plan = model.compile_inference((2, 4, 4))
    plan(np.zeros((1, 2, 4, 4), np.float32))
    replace(model)
    with pytest.raises(RuntimeError, match=message + " was replaced"):
        plan(np.zeros((1, 2, 4, 4), np.float32))
    plan.release()


def test_two_plans_share_the_lock_until_both_are_released():
    model = _small()
    a = model.compile_inference((2, 4, 4))
    b = model.compile_inference((2, 4, 4))
    a.release()
    assert not model[0].weight.data.flags.writeable
    del b  # dropping the last plan releases too
    assert model[0].weight.data.flags.writeable


def test_a_recompiled_plan_sees_new_weights():
    model = _small()
    x = np.random.default_rng(3).standard_normal((2, 2, 4, 4)).astype(np.float32)
    plan = model.compile_inference((2, 4, 4))
    before = plan(x)
    plan.release()
    model[0].weight.data *= 2
    plan = model.compile_inference((2, 4, 4))
    after = plan(x)
    assert not np.array_equal(before, after)
    check_against_oracle(model, x, after)
    plan.release()


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, match", [
    (nn.GELU(), r"layer '1' \(GELU\)"),
    (nn.Softmax(dim=1), r"layer '1' \(Softmax\)"),
    (nn.Concat(nn.Identity(), nn.Identity()), r"layer '1' \(Concat\)"),
    (nn.BatchNorm2d(4, track_running_stats=False), "track_running_stats"),
    (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode"),
    (nn.Flatten(2), "start_dim"),
    (nn.Linear(5, 5), "flattened"),
    (nn.AvgPool2d(2, divisor_override=3), "divisor_override"),
])
def test_unsupported_layers_are_refused_by_name(layer, match):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), layer).eval()
    with pytest.raises(NotImplementedError, match=match):
        model.compile_inference((3, 5, 5))
    assert model[0].weight.data.flags.writeable  # nothing stays locked


def test_a_subclass_with_its_own_forward_is_refused():
    class Doubling(nn.ReLU):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(NotImplementedError, match="Doubling"):
        nn.Sequential(Doubling()).eval().compile_inference((1, 2, 2))


def test_bad_arguments_are_named():
    model = _small()
    with pytest.raises(ValueError, match="eval mode"):
        model.train().compile_inference((2, 4, 4))
    model.eval()
    for shape in [(2, 4), (2, 0, 4), "x", (2, 4.0, 4)]:
        with pytest.raises(ValueError, match="input_shape"):
            model.compile_inference(shape)
    with pytest.raises(ValueError, match="conv_algo"):
        model.compile_inference((2, 4, 4), conv_algo="fast")
    with pytest.raises(ValueError, match="batch_order must be \"measure\", \"layer_major\" or \"image_major\", got \"images\""):
        model.compile_inference((2, 4, 4), batch_order="images")
    with pytest.raises(TypeError, match="batch_order must be a str"):
        model.compile_inference((2, 4, 4), batch_order=1)
    with pytest.raises(ValueError, match="value_layout must be \"measure\", \"plain\" or \"blocked\", got \"nchw16c\""):
        model.compile_inference((2, 4, 4), value_layout="nchw16c")
    with pytest.raises(TypeError, match="value_layout must be a str"):
        model.compile_inference((2, 4, 4), value_layout=True)
    with pytest.raises(TypeError, match="conv_algo must be a str"):
        model.compile_inference((2, 4, 4), conv_algo=None)
    with pytest.raises(ValueError, match="4: in_features is 128 but its input has 8 features"):
        model.compile_inference((2, 1, 1))
    with pytest.raises(ValueError, match="^0: "):
        nn.Sequential(nn.Conv2d(2, 3, 5)).eval().compile_inference((2, 4, 4))
    plan = model.compile_inference((2, 4, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2, 4, 4\)"):
        plan(np.zeros((1, 2, 4, 5), np.float32))
    with pytest.raises(TypeError, match="x must be"):
        plan(np.zeros((1, 2, 4, 4), bool))
    with pytest.raises(ValueError, match="out must be"):
        plan(np.zeros((1, 2, 4, 4), np.float32), out=np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="cnnkit.nn.Module"):
        cnnkit.plan.compile_inference(lambda x: x, (1, 2, 2))
    plan.release()


def test_profile_lists_every_op_with_its_time():
    model = _small()
    plan = model.compile_inference((2, 4, 4))
    rows = plan.profile(np.zeros((2, 2, 4, 4), np.float32))
    assert len(rows) == plan.num_ops == 2
    assert all(seconds >= 0 for _, seconds in rows) and rows[0][0].startswith("0+1")
    plan.release()

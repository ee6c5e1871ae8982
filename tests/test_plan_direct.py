"""The inference plan's own direct convolution (conv_algo="direct", "direct_block_major" and
"winograd", cpu/plan/plan_direct.h): single layers around the vector width, against the float64
oracle and the layer-by-layer path."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import nn
from conftest import supported_isas
from tolerance import assert_close, assert_exact, winograd_5x5_rounds
from test_plan import check_against_oracle, oracle, randomize, reductions

CHANNELS = [1, 6, 15, 16, 17, 33]
# The orders of an image's work: band by band, channel block by channel block, and Winograd
# (F(2x2, 3x3), or F(2x2, 5x5) on 5x5 layers of 8 or more input channels) on the 3x3 and 5x5
# stride-1 layers (the others band by band).
ORDERS = {"direct": "", "direct_block_major": ", block-major", "winograd": ", winograd"}


def _order_shown(order, k, stride, dilation_h=1):
    """What the describe line of a conv the direct kernel runs says after its name."""
    if order == "winograd" and (k not in (3, 5) or stride != (1, 1) or dilation_h != 1):
        return ""
    return ORDERS[order]


def _fits(k, stride_w):
    """The kernel widths and horizontal strides plan_direct_fits accepts (one group, no dilation
    along the rows)."""
    return k in (1, 3, 5) if stride_w == 1 else k in (1, 3)


@st.composite
def layers(draw, allow_bn=True, acts=(None, nn.ReLU, nn.Tanh)):
    """A conv (bias or a folded batch norm; strides and dilation down the columns), maybe an
    activation, maybe inside a Residual whose shortcut is the identity or a 1x1 projection: the
    epilogues the kernel fuses."""
    c = draw(st.sampled_from(CHANNELS))
    out = draw(st.sampled_from(CHANNELS))
    k = draw(st.sampled_from([1, 3, 5]))
    sh, sw = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))
    dh = draw(st.sampled_from([1, 1, 2]))  # dilation down the columns only: the kernel runs it
    pad = draw(st.integers(0, k // 2))
    h = draw(st.integers(dh * (k - 1) + 1, 19))
    w = draw(st.integers(k, 27))
    conv = nn.Conv2d(c, out, k, stride=(sh, sw), padding=pad, dilation=(dh, 1), bias=draw(st.booleans()))
    body = [conv] + ([nn.BatchNorm2d(out)] if allow_bn and draw(st.booleans()) else [])
    act = draw(st.sampled_from(acts))
    oh, ow = (h + 2 * pad - dh * (k - 1) - 1) // sh + 1, (w + 2 * pad - k) // sw + 1
    model = body
    if draw(st.booleans()):
        # The residual needs the body's output shape: the identity where the conv keeps the shape,
        # else a 1x1 projection where its output matches.
        if (c, h, w) == (out, oh, ow) and draw(st.booleans()):
            model = [nn.Residual(nn.Sequential(*body), None)]
        elif ((h - 1) // sh + 1, (w - 1) // sw + 1) == (oh, ow):
            model = [nn.Residual(nn.Sequential(*body), nn.Conv2d(c, out, 1, stride=(sh, sw)))]
    if act is not None:
        model.append(act())
    return nn.Sequential(*model), (c, h, w), _fits(k, sw), _order_shown("winograd", k, (sh, sw), dh) != ""


@given(layer=layers(), batch=st.sampled_from([1, 2, 3]), order=st.sampled_from(sorted(ORDERS)),
       seed=st.integers(0, 2**31 - 1))
def test_direct_matches_the_oracle_and_the_layers(isa, threads, layer, batch, order, seed):
    model, shape, fits, winograd = layer
    rng = np.random.default_rng(seed)
    randomize(model, rng)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    layers_out = model(x)
    # Layer-major: the describe line then names the way (image-major is test_plan.py's).
    plan = model.compile_inference(shape, conv_algo=order, batch_order="layer_major")
    try:
        got = plan(x)
        # The plan's kernel for this ISA runs every conv it fits (a 1x1 shortcut always) under a
        # vector ISA cap, and no other.
        for line in plan.describe().splitlines():
            if "conv2d" in line:
                shortcut = ".shortcut" in line.split(":")[0]
                shown = "" if order == "winograd" and (shortcut or not winograd) else ORDERS[order]
                assert (f"[plan_direct_{isa}{shown}]" in line) == ((fits or shortcut) and isa != "scalar"), line
        check_against_oracle(model, x, got, "plan direct")
        x64 = np.abs(np.asarray(x, np.float64))
        assert_close(got, layers_out, oracle(model, x64, absolute=True), reductions(model), "direct vs layers", c=16)
        np.testing.assert_array_equal(plan(x), got)
    finally:
        plan.release()


# A folded batch norm and tanh round; ReLU keeps integers exact.
@given(layer=layers(allow_bn=False, acts=(None, nn.ReLU)), batch=st.sampled_from([1, 2]),
       order=st.sampled_from(sorted(ORDERS)), seed=st.integers(0, 2**31 - 1))
def test_direct_integer_fills_are_exact(isa, threads, layer, batch, order, seed):
    model, shape, _, _ = layer
    rng = np.random.default_rng(seed)
    randomize(model, rng, integer=True)
    x = rng.integers(-3, 4, (batch, *shape)).astype(np.float32)
    expected = oracle(model, np.asarray(x, np.float64))
    plan = model.compile_inference(shape, conv_algo=order)
    try:
        got = plan(x)
        if order == "winograd" and any(_winograd_5x5_rounds(conv, 2, 3) for conv in _convs(model)):
            check_against_oracle(model, x, got, "plan direct integer fill, winograd 5x5")
        else:
            assert_exact(got, expected, "plan direct integer fill")
    finally:
        plan.release()


def _convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def _winograd_5x5_rounds(conv, w_max, x_max):
    """Whether the Winograd order runs conv as F(2x2, 5x5) and may round on fills this large."""
    return (conv.stride, conv.dilation) == ((1, 1), (1, 1)) and winograd_5x5_rounds(
        conv.kernel_size, conv.in_channels, w_max, x_max)


@given(c=st.sampled_from([8]), out=st.sampled_from(CHANNELS), h=st.integers(1, 13), w=st.integers(1, 19),
       pad=st.integers(0, 2), batch=st.sampled_from([1, 2]), seed=st.integers(0, 2**31 - 1))
def test_winograd_5x5_unit_fills_are_exact(isa, threads, c, out, h, w, pad, batch, seed):
    """F(2x2, 5x5) with fills of -1, 0 and 1 on 8 input channels, where its sums stay below 2**24:
    any wrong coefficient of its transforms shows as a wrong integer."""
    h, w = max(h, 5 - 2 * pad), max(w, 5 - 2 * pad)
    model = nn.Sequential(nn.Conv2d(c, out, 5, padding=pad), nn.ReLU()).eval()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.integers(-1, 2, p.data.shape)
    assert not _winograd_5x5_rounds(model[0], 1, 1)
    x = rng.integers(-1, 2, (batch, c, h, w)).astype(np.float32)
    plan = model.compile_inference((c, h, w), conv_algo="winograd", batch_order="layer_major")
    try:
        got = plan(x)
        assert (f"[plan_direct_{isa}, winograd]" in plan.describe()) == (isa != "scalar")
        assert_exact(got, oracle(model, np.asarray(x, np.float64)), "plan winograd 5x5 unit fill")
    finally:
        plan.release()


@st.composite
def whole_planes(draw):
    """3x3 stride-1 layers padded by 1 on planes of 1-4 rows and 1-17 columns: where the output plane
    is one tile of the kernel (on AVX-512 4 rows of up to 6 positions, 2 of up to 12, 1 of 16; on
    AVX2 2 rows of 3 or 1 of 6 for two channel blocks, 3 of 4 or 1 of 12 for one) its padding taps
    are left out at compile time; the others take the general tiles. A second layer
    (a residual block) reads the first's output, blocked and bordered where the plan keeps it so."""
    c, out = draw(st.sampled_from(CHANNELS)), draw(st.sampled_from([8, 16, 17, 32]))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 17))
    layers = [nn.Conv2d(c, out, 3, padding=1, bias=draw(st.booleans())), nn.ReLU()]
    if draw(st.booleans()):
        layers += [nn.Residual(nn.Sequential(nn.Conv2d(out, out, 3, padding=1)), None), nn.ReLU()]
    return nn.Sequential(*layers), (c, h, w)


@given(case=whole_planes(), batch=st.sampled_from([1, 2]), order=st.sampled_from(sorted(ORDERS)),
       layout=st.sampled_from(["measure", "plain", "blocked"]), seed=st.integers(0, 2**31 - 1))
def test_direct_whole_small_planes_match_the_oracle(isa, threads, case, batch, order, layout, seed):
    """Exact with small-integer fills, and random fills within the tolerance of the oracle and the
    layer-by-layer path."""
    model, shape = case
    rng = np.random.default_rng(seed)
    randomize(model, rng, integer=True)
    x = rng.integers(-3, 4, (batch, *shape)).astype(np.float32)
    plan = model.compile_inference(shape, conv_algo=order, value_layout=layout)
    try:
        assert_exact(plan(x), oracle(model, np.asarray(x, np.float64)), "plan direct whole plane")
    finally:
        plan.release()
    randomize(model, rng)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    plan = model.compile_inference(shape, conv_algo=order, value_layout=layout)
    try:
        got = plan(x)
        check_against_oracle(model, x, got, "plan direct whole plane")
        x64 = np.abs(np.asarray(x, np.float64))
        assert_close(got, model(x), oracle(model, x64, absolute=True), reductions(model), "whole plane vs layers",
                     c=16)
    finally:
        plan.release()


@pytest.mark.parametrize("c, out, size, k, stride, pad", [
    (16, 16, 32, 3, 1, 1),   # resnet20's first stage
    (16, 32, 32, 3, 2, 1),   # its stride-2 3x3
    (16, 32, 32, 1, 2, 0),   # and its 1x1 shortcut
    (64, 64, 8, 3, 1, 1),    # its last stage: 4 channel blocks
    (1, 6, 28, 5, 1, 2),     # lenet5 c1: 6 of 16 lanes
    (6, 16, 14, 5, 1, 0),    # lenet5 c2: read in place
    (256, 512, 4, 3, 1, 1),  # vgg11's first 512-channel layer at batch 1: block-major's case
])
@pytest.mark.parametrize("order", sorted(ORDERS))
def test_direct_runs_the_zoo_shapes(isa, threads, c, out, size, k, stride, pad, order):
    model = randomize(nn.Sequential(nn.Conv2d(c, out, k, stride=stride, padding=pad), nn.ReLU()),
                      np.random.default_rng(k))
    x = np.random.default_rng(size).standard_normal((1, c, size, size)).astype(np.float32)
    plan = model.compile_inference((c, size, size), conv_algo=order)
    try:
        got = plan(x)
        shown = _order_shown(order, k, (stride, stride))
        assert (f"plan_direct_{isa}{shown}]" in plan.describe()) == (isa != "scalar")
        check_against_oracle(model, x, got, "plan direct")
    finally:
        plan.release()


def test_direct_follows_an_isa_cap_changed_between_calls():
    model = randomize(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()), np.random.default_rng(3))
    x = np.random.default_rng(4).standard_normal((2, 16, 9, 9)).astype(np.float32)
    plan = model.compile_inference((16, 9, 9), conv_algo="direct")
    previous = cnnkit.get_max_isa()
    try:
        for isa in supported_isas()[::-1] + ["avx512"]:
            if isa not in supported_isas():
                continue
            cnnkit.set_max_isa(isa)
            got = plan(x)
            # Repacked for the cap at each preparation: that ISA's kernel, none under scalar.
            text = plan.describe()
            assert ("plan_direct" in text) == (isa != "scalar") and (isa == "scalar" or f"plan_direct_{isa}" in text)
            check_against_oracle(model, x, got, f"plan direct under {isa}")
    finally:
        cnnkit.set_max_isa(previous)
        plan.release()


# -- the values between direct convolutions: blocked (NCHW16c / NCHW8c) and zero-bordered --------
@st.composite
def chains(draw):
    """Two to four layers the plan's direct kernel runs, one after another: convolutions (every
    kernel width and stride it takes, dilation and padding down the columns and along the rows
    apart, a folded batch norm, ReLU or tanh) and residual blocks (identity or 1x1 projection),
    with channel counts around the vector widths, so that some values between them are blocked
    and bordered, some only bordered, and some plain."""
    c = draw(st.sampled_from([3, 8, 16, 17]))
    h, w = draw(st.integers(6, 13)), draw(st.integers(6, 13))
    shape, layers = (c, h, w), []
    for _ in range(draw(st.integers(2, 4))):
        if draw(st.booleans()) and min(h, w) >= 3:
            body = [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                    nn.Conv2d(c, c, 3, padding=1)]
            layers.append(nn.Residual(nn.Sequential(*body), nn.Conv2d(c, c, 1) if draw(st.booleans()) else None))
            layers.append(nn.ReLU())
            continue
        out = draw(st.sampled_from([8, 16, 17, 24, 32]))
        sw = draw(st.sampled_from([1, 2]))
        k = draw(st.sampled_from([1, 3] + ([5] if sw == 1 and min(h, w) >= 5 else [])))
        if k > min(h, w):
            k = 1
        sh, dh = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])) if h >= 2 * k else 1
        pad = (draw(st.integers(0, k // 2)), draw(st.integers(0, k // 2)))
        layers.append(nn.Conv2d(c, out, k, stride=(sh, sw), padding=pad, dilation=(dh, 1)))
        if draw(st.booleans()):
            layers.append(nn.BatchNorm2d(out))
        act = draw(st.sampled_from([None, nn.ReLU, nn.Tanh]))
        if act is not None:
            layers.append(act())
        c = out
        h, w = (h + 2 * pad[0] - dh * (k - 1) - 1) // sh + 1, (w + 2 * pad[1] - k) // sw + 1
        if min(h, w) < 1:
            break
    return nn.Sequential(*layers), shape


@given(chain=chains(), batch=st.sampled_from([1, 2, 3]), order=st.sampled_from(sorted(ORDERS)),
       batch_order=st.sampled_from(["layer_major", "image_major"]), seed=st.integers(0, 2**31 - 1))
def test_blocked_and_bordered_values_give_the_bits_of_plain_ones(isa, threads, chain, batch, order, batch_order,
                                                                 seed):
    """Every layout runs the same arithmetic in the same order: the blocked/bordered plan, the plain
    one and the measured one agree to the bit, on every call (the measured choice is made on the
    first) and in a profile (each op on its own, through the same layouts), and match the oracle."""
    model, shape = chain
    rng = np.random.default_rng(seed)
    randomize(model, rng)
    try:
        model(np.zeros((1, *shape), np.float32))
    except ValueError:
        return  # a layer the chain's shapes left too small
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    plans = {layout: model.compile_inference(shape, conv_algo=order, batch_order=batch_order, value_layout=layout)
             for layout in ("plain", "blocked", "measure")}
    try:
        plain = plans["plain"](x)
        check_against_oracle(model, x, plain, "plan plain values")
        for layout, plan in plans.items():
            for _ in range(2):
                np.testing.assert_array_equal(plan(x), plain, err_msg=layout)
            got = np.empty_like(plain)
            plan(x, out=got)
            np.testing.assert_array_equal(got, plain, err_msg=layout)
        assert "[blocked" not in plans["plain"].describe() and "border" not in plans["plain"].describe()
        if isa == "scalar":
            assert "[blocked" not in plans["blocked"].describe()
        profiled = plans["blocked"].profile(x)
        assert len(profiled) == plans["blocked"].num_ops
        np.testing.assert_array_equal(plans["blocked"](x), plain)
    finally:
        for plan in plans.values():
            plan.release()


@pytest.mark.parametrize("batch_order", ["layer_major", "image_major"])
@pytest.mark.parametrize("batch", [1, 3])
def test_a_resnet_keeps_its_stages_blocked(isa, threads, batch_order, batch):
    """resnet8 (8, 16 and 32 channels): under a vector ISA cap every value between two of its
    convolutions whose channels fill the cap's blocks is kept blocked with a border of 1 (the 3x3
    convolutions' padding), the one the classifier's pooling reads stays plain, and the results
    are the plain plan's bits."""
    model = randomize(cnnkit.models.resnet(8, width=16), np.random.default_rng(batch))
    x = np.random.default_rng(7).standard_normal((batch, 3, 16, 16)).astype(np.float32)
    blocked = model.compile_inference((3, 16, 16), conv_algo="direct", batch_order=batch_order,
                                      value_layout="blocked")
    plain = model.compile_inference((3, 16, 16), conv_algo="direct", batch_order=batch_order, value_layout="plain")
    try:
        got = blocked(x)
        np.testing.assert_array_equal(got, plain(x))
        check_against_oracle(model, x, got, "plan blocked resnet8")
        lines = blocked.describe().splitlines()
        convs = [line for line in lines if ": conv2d" in line]
        assert not any("[blocked" in line or "border" in line for line in lines if ": conv2d" not in line)
        assert "[blocked" not in convs[-1]  # read by the pooling
        if isa == "scalar":
            assert not any("[blocked" in line for line in lines)
        else:
            # 16 lanes (AVX-512) or 8 (AVX2): all three stages' widths fill them. The two 1x1
            # shortcuts' outputs are only added as residuals: blocked, no border.
            shortcuts = [line for line in convs if ".shortcut" in line.split(":")[0]]
            assert len(shortcuts) == 2 and all(line.endswith("[blocked]") for line in shortcuts), blocked.describe()
            assert sum(line.endswith("[blocked, border 1]") for line in convs) == len(convs) - 3, blocked.describe()
    finally:
        blocked.release()
        plain.release()

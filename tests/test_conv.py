"""conv2d forward and backward, both algorithms, against the float64 oracle (and PyTorch if installed)."""

import concurrent.futures
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import _C, reference
from cnnkit import functional as F
from conftest import supported_isas
from devices import CPU
from tolerance import assert_close, assert_exact

ALGOS = ["direct", "im2col"]


def _as_pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _normalise(kernel, stride, padding, dilation):
    """The oracle's arguments: stride and dilation pairs, padding (top, bottom, left, right)."""
    stride, dilation = _as_pair(stride), _as_pair(dilation)
    if padding == "valid":
        pads = (0, 0, 0, 0)
    elif padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        pads = (totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2, totals[1] - totals[1] // 2)
    else:
        ph, pw = _as_pair(padding)
        pads = (ph, ph, pw, pw)
    return stride, pads, dilation


def _check_against_oracle(x, w, b, stride, padding, dilation, groups, algo, rng, device=CPU):
    """Forward and all three gradients of one call on ``device`` vs the oracle under the tolerance rule."""
    kw_args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    norm = _normalise(w.shape[2:], stride, padding, dilation)
    n, out, kh, kw = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    y = device.call(F.conv2d, x, w, b, **kw_args, algo=algo)
    expected = reference.conv2d(x, w, b, *norm, groups)
    magnitude = reference.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), *norm, groups)
    assert_close(y, expected, magnitude, w.shape[1] * kh * kw + (b is not None), f"conv2d[{algo}]")

    dy = rng.standard_normal(y.shape).astype(np.float32)
    grads = device.call(F.conv2d_backward, dy, x, w, **kw_args, bias_grad=b is not None, algo=algo)
    want = reference.conv2d_backward(dy, x, w, *norm, groups)
    mags = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *norm, groups)
    npos = n * y.shape[2] * y.shape[3]
    ks = [out // groups * kh * kw, npos, npos]
    names = ["conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias"]
    for got, exp, mag, k, name in zip(grads, want, mags, ks, names):
        if name == "conv2d_grad_bias" and b is None:
            assert got is None
            continue
        assert_close(got, exp, mag, k, f"{name}[{algo}]")
    return y, grads


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if draw(st.booleans()):  # depthwise: one input channel per group
        groups, cg = draw(st.integers(2, 5)), 1
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kind = draw(st.sampled_from(["int", "pair", "valid", "same"]))
    stride = (1, 1) if kind == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = {
        "int": draw(st.integers(0, 2)),
        "pair": (draw(st.integers(0, 3)), draw(st.integers(0, 3))),
        "valid": "valid",
        "same": "same",
    }[kind]
    _, pads, _ = _normalise(kernel, stride, padding, dilation)
    # Smallest input the (dilated) kernel fits in once padded, plus a few.
    h0 = max(0, dilation[0] * (kernel[0] - 1) + 1 - pads[0] - pads[1])
    w0 = max(0, dilation[1] * (kernel[1] - 1) + 1 - pads[2] - pads[3])
    if kind == "same":
        h0, w0 = max(h0, 1), max(w0, 1)
    h, w = draw(st.integers(h0, h0 + 9)), draw(st.integers(w0, w0 + 9))
    return dict(
        x_shape=(draw(st.integers(1, 3)), groups * cg, h, w),
        w_shape=(groups * kg, cg, *kernel),
        bias=draw(st.booleans()),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )


def _case_arrays(case, seed):
    """Random input, weight and bias (None without bias) for a drawn case, and its conv arguments."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["x_shape"]).astype(np.float32)
    w = rng.standard_normal(case["w_shape"]).astype(np.float32)
    b = rng.standard_normal(case["w_shape"][0]).astype(np.float32) if case["bias"] else None
    return x, w, b, (case["stride"], case["padding"], case["dilation"], case["groups"])


def _takes_kvec(isa, w_shape, groups):
    """Whether the backward dispatch runs kvec (dispatch.cpp, wants_kvec): a
    full vector of output channels per group and not a 1x1 layer. (Its AVX2
    exception, stride-1 layers at most 3 wide with 2M+ weight-gradient floats
    per group on small planes, is far above the shapes asked about here.)"""
    lanes = {"avx512": 16, "avx2": 8}.get(isa)
    return lanes is not None and w_shape[2:] != (1, 1) and w_shape[0] // groups >= lanes


def _backward_kernel(isa, w_shape, groups):
    """The kernel conv2d_backward(algo="direct") runs: kvec where it applies,
    else direct_rows (stride-1 shapes only)."""
    if isa == "scalar":
        return "direct"
    return f"kvec_{isa}" if _takes_kvec(isa, w_shape, groups) else f"direct_rows_{isa}"


@given(case=conv_cases(), seed=st.integers(0, 2**31))
def test_conv2d_matches_oracle(isa, device, case, seed):
    x, w, b, args = _case_arrays(case, seed)
    for algo in ALGOS:
        _check_against_oracle(x, w, b, *args, algo, np.random.default_rng(seed), device)


def _assert_integer_fill_exact(seed, x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, *,
                               bias=True, algo="auto", label=None):
    """Forward and all three gradients of one call, small-integer fills (every
    sum exact in float32 whatever its order), against the oracle exactly."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, size=x_shape).astype(np.float32)
    w = rng.integers(-8, 9, size=w_shape).astype(np.float32)
    b = rng.integers(-8, 9, size=w_shape[0]).astype(np.float32) if bias else None
    norm = _normalise(w_shape[2:], stride, padding, dilation)
    kw_args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    label = label or algo
    y = F.conv2d(x, w, b, **kw_args, algo=algo)
    assert_exact(y, reference.conv2d(x, w, b, *norm, groups), f"conv2d[{label}]")
    dy = rng.integers(-8, 9, size=y.shape).astype(np.float32)
    got = F.conv2d_backward(dy, x, w, **kw_args, algo=algo)
    for g, e, name in zip(got, reference.conv2d_backward(dy, x, w, *norm, groups), ["dx", "dw", "db"]):
        assert_exact(g, e, f"conv2d_backward {name}[{label}]")


# (x shape, w shape, stride, padding, dilation, groups): strided, grouped,
# depthwise, asymmetric "same", pointwise (whose columns are the input itself).
INTEGER_CASES = [
    ((3, 6, 13, 11), (8, 3, 3, 3), 2, 1, 1, 2),
    ((2, 4, 12, 12), (4, 1, 3, 3), 1, "same", 2, 4),
    ((2, 3, 10, 9), (5, 3, 4, 2), 1, "same", 1, 1),
    ((2, 8, 9, 7), (6, 8, 1, 1), 1, 0, 1, 1),
    ((1, 5, 17, 16), (7, 5, 5, 3), (1, 2), (2, 0), (1, 2), 1),
]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", INTEGER_CASES)
def test_integer_fill_is_exact(isa, threads, algo, case):
    _assert_integer_fill_exact(7, *case, algo=algo)


@pytest.mark.parametrize("case", INTEGER_CASES[:3])
def test_native_reference_kernel_matches_oracle(case):
    x_shape, w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 9, size=x_shape).astype(np.float32)
    w = rng.integers(-8, 9, size=w_shape).astype(np.float32)
    b = rng.integers(-8, 9, size=w_shape[0]).astype(np.float32)
    st_, pads, dil = _normalise(w_shape[2:], stride, padding, dilation)
    y = _C.conv2d(x, w, b, st_, pads, dil, groups, "reference")
    assert_exact(y, reference.conv2d(x, w, b, st_, pads, dil, groups), "conv2d[reference]")
    dy = rng.integers(-8, 9, size=y.shape).astype(np.float32)
    got = _C.conv2d_backward(dy, x, w, st_, pads, dil, groups, True, True, True, "reference")
    for g, e in zip(got, reference.conv2d_backward(dy, x, w, st_, pads, dil, groups)):
        assert_exact(g, e, "conv2d_backward[reference]")


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("width", [7, 8, 9, 15, 16, 17, 31, 33])
@pytest.mark.parametrize("stride", [1, 2])
def test_widths_around_simd_lanes(algo, width, stride):
    rng = np.random.default_rng(width)
    x = rng.standard_normal((2, 3, 5, width)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    _check_against_oracle(x, w, b, stride, 1, 1, 1, algo, rng)


@pytest.mark.parametrize("algo", ALGOS)
def test_larger_layer(threads, algo):
    """A ResNet-like 3x3 layer: the threaded paths (images split across threads, or sgemm threading)."""
    rng = np.random.default_rng(11)
    for n in (1, 3):
        x = rng.standard_normal((n, 32, 20, 20)).astype(np.float32)
        w = rng.standard_normal((48, 32, 3, 3)).astype(np.float32)
        b = rng.standard_normal(48).astype(np.float32)
        _check_against_oracle(x, w, b, 1, 1, 1, 1, algo, rng)


def test_im2col_processes_large_images_in_chunks(threads):
    # One image's column matrix is 576 x 176*176 floats = 71 MiB, over the
    # 64 MiB bound, so every image is processed in several chunks of positions.
    x_shape, w_shape = (2, 64, 176, 176), (4, 64, 3, 3)
    assert 64 * 9 * 176 * 176 * 4 > 64 << 20
    assert _C.conv2d_implementation(x_shape, w_shape, (1, 1), (1, 1, 1, 1), (1, 1), 1, "im2col") == "im2col"
    _assert_integer_fill_exact(5, x_shape, w_shape, 1, 1, bias=False, algo="im2col", label="im2col chunked")


def test_im2col_short_rows_in_chunks(threads):
    # Output rows of 30 floats go through a zero-padded copy of each channel;
    # 18900 x 900 column floats are over the bound, so the second chunk of
    # positions starts in the middle of an output row (887 = 29 * 30 + 17).
    x_shape, w_shape = (1, 2100, 30, 30), (4, 2100, 3, 3)
    assert 2100 * 9 * 900 > 16 << 20 > 2100 * 9 * 887
    _assert_integer_fill_exact(6, x_shape, w_shape, 1, 1, bias=False, algo="im2col", label="im2col short rows")


# im2col and col2im move stride-2 rows four floats at a time and stop before
# the last group of each row segment: rows of 1 to 36 outputs (up to 32
# through a zero-padded plane, longer ones by the tap-segment walk), with and
# without padding (segments that start and end inside the row), the last
# segment ending at the end of the input array. Integer fills: exact.
@pytest.mark.parametrize("width, padding", [(3, 1), (9, 0), (10, 1), (12, 1), (41, 1), (42, 0), (69, 0), (70, 1)])
def test_im2col_stride_2_rows_integer_fill_is_exact(threads, width, padding):
    _assert_integer_fill_exact(32, (2, 3, 5, width), (4, 3, 3, 3), 2, padding, bias=False, algo="im2col",
                               label="im2col stride 2")


def test_auto_picks_direct_kernels_for_stride_1_and_im2col_or_direct_otherwise(isa):
    args = ((1, 1), (1, 1, 1, 1), (1, 1))
    rows = "im2col" if isa == "scalar" else f"direct_rows_{isa}"
    walk = "im2col" if isa == "scalar" else f"direct_walk_{isa}"
    for backward in (False, True):
        impl = lambda *a: _C.conv2d_implementation(*a, backward=backward)
        cvec = "im2col" if isa == "scalar" or backward else f"direct_cvec_{isa}"
        # Backward: kvec from a full vector of output channels per group (any
        # stride), else as the forward.
        kvec = "im2col" if isa == "scalar" else f"kvec_{isa}"
        # Strided forward: direct_cvec with 16 lanes; with AVX2 only for kernels of
        # 25 or more taps, im2col for smaller ones. 1x1 strided: one GEMM per image.
        strided = kvec if backward else cvec if isa == "avx512" else "im2col"
        strided_big = kvec if backward else cvec
        # Long stride-1 rows: direct_walk forward for 3-, 5- and 7-wide kernels
        # with 16 or more output channels, direct_rows otherwise.
        assert impl((1, 64, 56, 56), (64, 64, 3, 3), *args, 1, "auto") == (kvec if backward else walk)
        assert impl((1, 64, 56, 56), (64, 64, 4, 4), *args, 1, "auto") == (kvec if backward else rows)
        # Small planes with many channels: kvec; with 2M+ weight floats, GEMMs
        # over blocks of images backward. Planes of at most 4x4 with long
        # reductions: GEMMs over blocks of images both ways.
        assert impl((8, 256, 14, 14), (256, 256, 3, 3), *args, 1, "auto") == (kvec if backward else walk)
        assert impl((8, 512, 14, 14), (512, 512, 3, 3), *args, 1, "auto") == ("image_blocks" if backward else walk)
        assert impl((8, 512, 7, 7), (512, 512, 3, 3), *args, 1, "auto") == ("image_blocks" if backward else walk)
        assert impl((8, 256, 8, 8), (256, 256, 3, 3), *args, 1, "auto") == (kvec if backward else walk)
        assert impl((8, 128, 4, 4), (256, 128, 3, 3), *args, 1, "auto") == "image_blocks"
        assert impl((8, 64, 4, 4), (64, 64, 3, 3), *args, 1, "auto") == (kvec if backward else walk)
        # 8 output channels: one AVX2 vector (kvec backward), half an AVX-512 one.
        assert impl((1, 64, 56, 56), (8, 64, 3, 3), *args, 1, "auto") == (
            kvec if backward and isa == "avx2" else rows)
        assert impl((64, 1, 32, 32), (6, 1, 5, 5), (1, 1), (0,) * 4, (1, 1), 1, "auto") in (rows, "direct")
        # Pointwise: the input is the column matrix, one GEMM per image; with
        # AVX-512 and at most 64 input channels, direct_rows forward.
        assert impl((8, 256, 14, 14), (256, 256, 1, 1), (1, 1), (0,) * 4, (1, 1), 1, "auto") == "im2col"
        assert impl((8, 32, 56, 56), (64, 32, 1, 1), (1, 1), (0,) * 4, (1, 1), 1, "auto") == (
            rows if isa == "avx512" and not backward else "im2col")
        # Strided: direct_cvec forward (AVX-512), kvec backward; the direct loops for depthwise.
        assert impl((8, 128, 28, 28), (256, 128, 3, 3), (2, 2), (1,) * 4, (1, 1), 1, "auto") == strided
        assert impl((8, 3, 227, 227), (96, 3, 11, 11), (4, 4), (0,) * 4, (1, 1), 1, "auto") == strided_big
        assert impl((8, 32, 56, 56), (64, 32, 5, 5), (2, 2), (2,) * 4, (1, 1), 1, "auto") == strided_big
        assert impl((8, 64, 56, 56), (128, 64, 1, 1), (2, 2), (0,) * 4, (1, 1), 1, "auto") == "im2col"
        # Short stride-1 rows with 16 or more output channels: direct_walk forward
        # for 3-, 5- and 7-wide kernels, direct_cvec for the other widths.
        assert impl((64, 6, 14, 14), (16, 6, 5, 5), (1, 1), (0,) * 4, (1, 1), 1, "auto") == (
            kvec if backward else walk)
        assert impl((8, 16, 14, 14), (32, 16, 4, 4), (1, 1), (0,) * 4, (1, 1), 1, "auto") == (
            kvec if backward else cvec)
        # Depthwise: the depthwise kernels at any stride; with several output
        # channels per input channel only where direct_rows cannot run (strided).
        depthwise = "direct" if isa == "scalar" else f"depthwise_{isa}"
        assert impl((1, 32, 56, 56), (32, 1, 3, 3), (2, 2), (1,) * 4, (1, 1), 32, "auto") == depthwise
        assert impl((1, 32, 56, 56), (32, 1, 3, 3), *args, 32, "auto") == depthwise
        assert impl((1, 32, 56, 56), (64, 1, 3, 3), (2, 2), (1,) * 4, (1, 1), 32, "auto") == depthwise
        assert impl((1, 32, 56, 56), (64, 1, 3, 3), *args, 32, "auto") == (rows if isa != "scalar" else "direct")
        assert impl((1, 64, 56, 56), (64, 64, 3, 3), *args, 1, "direct") == (
            "direct" if isa == "scalar" else kvec if backward else walk)
    # Scalar: the old rule, direct loops for depthwise and few channels.
    if isa == "scalar":
        assert _C.conv2d_implementation((1, 3, 224, 224), (2, 3, 3, 3), *args, 1, "auto") == "direct"
    # Padding wider than the dilated kernel: the input gradient cannot run as a
    # direct_rows conv, the forward can.
    wide = ((1, 2, 8, 8), (3, 2, 3, 3), (1, 1), (3, 3, 3, 3), (1, 1), 1, "direct")
    assert _C.conv2d_implementation(*wide) == ("direct" if isa == "scalar" else rows)
    assert _C.conv2d_implementation(*wide, backward=True) == "direct"
    # A single column (the reduction) larger than the whole workspace bound: im2col declines.
    huge = ((1, 1, 4097, 4097), (1, 1, 4097, 4097), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert _C.conv2d_implementation(*huge, "im2col") == "direct"


@st.composite
def direct_rows_cases(draw):
    """Stride-1 shapes for the direct_rows kernels: few input channels, output
    channel counts around the 6-channel tile, widths around 8 and 16 lanes, and
    "same" padding (asymmetric for even spans: rows share their horizontal
    padding, max(left, right) zeros between rows)."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.sampled_from([1, 3, 6])) if groups == 1 else draw(st.integers(1, 2))
    kg = draw(st.integers(1, 14))
    if cg == 1 and kg == 1:
        kg = 2  # one output channel per input channel runs the depthwise kernels
    kernel = (draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 2, 3, 5])))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    span = [d * (k - 1) for k, d in zip(kernel, dilation)]
    pads = (draw(st.integers(0, span[0])), draw(st.integers(0, span[1])))
    h = draw(st.integers(max(1, span[0] + 1 - 2 * pads[0]), 12))
    w = draw(st.sampled_from([7, 8, 9, 15, 16, 17, 23, 33]))
    w = max(w, span[1] + 1 - 2 * pads[1])
    return dict(
        x_shape=(draw(st.integers(1, 3)), groups * cg, h, w),
        w_shape=(groups * kg, cg, *kernel),
        bias=draw(st.booleans()),
        stride=1,
        padding="same" if draw(st.integers(0, 3)) == 0 else pads,
        dilation=dilation,
        groups=groups,
    )


@given(case=direct_rows_cases(), seed=st.integers(0, 2**31))
def test_direct_rows_matches_oracle(isa, threads, case, seed):
    x, w, b, args = _case_arrays(case, seed)
    _, pads, _ = _normalise(case["w_shape"][2:], *args[:3])
    for backward in (False, True):
        impl = _C.conv2d_implementation(case["x_shape"], case["w_shape"], (1, 1), pads, _as_pair(case["dilation"]),
                                        case["groups"], "direct", backward=backward)
        rows = "direct" if isa == "scalar" else f"direct_rows_{isa}"
        assert impl == (_backward_kernel(isa, case["w_shape"], case["groups"])
                        if backward else rows)
    _check_against_oracle(x, w, b, *args, "direct", np.random.default_rng(seed + 1))


# LeNet's layers and a 3-channel first layer, on the direct_rows path, filled with small integers.
@pytest.mark.parametrize(
    "x_shape, w_shape, padding",
    [((3, 1, 32, 32), (6, 1, 5, 5), 0), ((3, 6, 14, 14), (16, 6, 5, 5), 0), ((2, 3, 17, 19), (13, 3, 3, 3), 1)],
)
def test_direct_rows_integer_fill_is_exact(isa, threads, x_shape, w_shape, padding):
    _assert_integer_fill_exact(21, x_shape, w_shape, 1, padding)


@st.composite
def direct_cvec_cases(draw):
    """Shapes that run direct_cvec: output channels per group around the
    vector lanes and block sizes (8, 16, 32, 48, 64 and 96 channels), strides,
    dilations and output widths around the 6-, 7-, 8- and 12-position tiles,
    and kernels large enough to run in input-channel chunks."""
    groups = draw(st.sampled_from([1, 1, 1, 2]))
    cg = draw(st.sampled_from([1, 2, 3, 9]))
    kg = draw(st.sampled_from([8, 9, 15, 16, 17, 24, 31, 33, 48, 49, 64, 65, 96, 97, 130]))
    kernel = (draw(st.integers(1, 7)), draw(st.sampled_from([1, 2, 3, 4, 11])))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    if stride == (1, 1):
        stride = (1, 2)
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    h_min = max(1, span[0] - 2 * pads[0])
    h = draw(st.integers(h_min, max(h_min, 9)))
    wo = draw(st.sampled_from([1, 5, 6, 7, 11, 12, 13, 14, 25, 28]))
    w = max(1, span[1] - 2 * pads[1] + (wo - 1) * stride[1])
    return dict(
        x_shape=(draw(st.integers(1, 2)), groups * cg, h, w),
        w_shape=(groups * kg, cg, *kernel),
        bias=draw(st.booleans()),
        stride=stride,
        padding=pads,
        dilation=dilation,
        groups=groups,
    )


def _channel_vector_kernel(case):
    """direct_walk takes the channel-vector calls with 3-, 5- or 7-wide kernels
    and horizontal stride and dilation 1; direct_cvec the rest."""
    stride, dilation = _as_pair(case["stride"]), _as_pair(case["dilation"])
    walks = case["w_shape"][3] in (3, 5, 7) and stride[1] == 1 and dilation[1] == 1
    return "direct_walk" if walks else "direct_cvec"


def _assert_forward_matches_oracle(y, x, w, b, norm, groups, op):
    """conv2d output against the float64 oracle, K = C/groups*kh*kw (+1 with bias)."""
    magnitude = reference.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), *norm, groups)
    k = w.shape[1] * w.shape[2] * w.shape[3] + (b is not None)
    assert_close(y, reference.conv2d(x, w, b, *norm, groups), magnitude, k, op)


@given(case=direct_cvec_cases(), seed=st.integers(0, 2**31))
def test_direct_cvec_matches_oracle(isa, threads, case, seed):
    x, w, b, args = _case_arrays(case, seed)
    _, pads, _ = _normalise(case["w_shape"][2:], *args[:3])
    impl = _C.conv2d_implementation(case["x_shape"], case["w_shape"], case["stride"], pads, case["dilation"],
                                    case["groups"], "direct")
    assert impl == ("direct" if isa == "scalar" else f"{_channel_vector_kernel(case)}_{isa}")
    norm = _normalise(case["w_shape"][2:], *args[:3])
    y = F.conv2d(x, w, b, *args, algo="direct")
    _assert_forward_matches_oracle(y, x, w, b, norm, case["groups"], f"conv2d[{impl}]")


@st.composite
def depthwise_cases(draw):
    """Shapes for the depthwise kernels: one input channel per group, output
    widths around the vector lanes and the 4-row x 2-vector forward tile,
    strides 1-4 (phases of the padded rows), dilations, asymmetric padding,
    kernels up to 7 wide, and several output channels per input channel on
    strided layers."""
    groups = draw(st.integers(1, 6))
    kernel = (draw(st.integers(1, 5)), draw(st.sampled_from([1, 2, 3, 5, 7])))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    kg = draw(st.integers(1, 3)) if max(stride) > 1 else 1
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    wo = draw(st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 40]))
    h = draw(st.integers(max(1, span[0] - 2 * pads[0]), 14))
    w = max(1, span[1] - 2 * pads[1] + (wo - 1) * stride[1] + draw(st.integers(0, stride[1] - 1)))
    return dict(x_shape=(draw(st.integers(1, 3)), groups, h, w), w_shape=(groups * kg, 1, *kernel),
                bias=draw(st.booleans()), stride=stride, padding=pads, dilation=dilation, groups=groups)


@given(case=depthwise_cases(), seed=st.integers(0, 2**31))
def test_depthwise_matches_oracle(isa, threads, case, seed):
    x, w, b, args = _case_arrays(case, seed)
    _, pads, _ = _normalise(case["w_shape"][2:], *args[:3])
    for backward in (False, True):
        impl = _C.conv2d_implementation(case["x_shape"], case["w_shape"], _as_pair(case["stride"]), pads,
                                        _as_pair(case["dilation"]), case["groups"], "direct", backward=backward)
        assert impl == ("direct" if isa == "scalar" else f"depthwise_{isa}")
    _check_against_oracle(x, w, b, *args, "direct", np.random.default_rng(seed + 1))


# The depthwise kernels with small-integer fills: MobileNet-like 3x3 layers at
# stride 1 and 2 (the input gradient of stride 1 runs the depthwise forward of
# the flipped kernel, strided ones the per-phase gather), stride 3 with
# dilation, a 7-wide kernel, and two output channels per input channel.
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, dilation",
    [
        ((2, 5, 15, 37), (5, 1, 3, 3), 1, 1, 1),
        ((2, 4, 17, 34), (4, 1, 3, 3), 2, 1, 1),
        ((1, 3, 13, 29), (3, 1, 3, 5), (3, 3), (2, 1), 2),
        ((2, 2, 9, 40), (2, 1, 2, 7), (1, 2), (0, 3), 1),
        ((2, 3, 12, 21), (6, 1, 3, 3), 2, 1, 1),
    ],
)
def test_depthwise_integer_fill_is_exact(isa, threads, x_shape, w_shape, stride, padding, dilation):
    _assert_integer_fill_exact(31, x_shape, w_shape, stride, padding, dilation, x_shape[1], algo="direct",
                               label="depthwise")


@st.composite
def multiplier_cases(draw):
    """One input channel per group feeding several output channels (LeNet's first layer, 1 -> 6):
    channel counts around the weight gradient's blocks (6 channels x 4 taps on AVX-512, 3 x 3 on
    AVX2), batches past its 8 shares of the batch, widths around the lanes, strides, dilations."""
    groups = draw(st.integers(1, 3))
    kg = draw(st.sampled_from([2, 3, 4, 5, 6, 7, 12, 13, 32]))
    kernel = (draw(st.integers(1, 5)), draw(st.sampled_from([1, 3, 5])))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    wo = draw(st.sampled_from([1, 7, 8, 9, 15, 16, 17, 28, 33]))
    h = draw(st.integers(max(1, span[0] - 2 * pads[0]), 9))
    w = max(1, span[1] - 2 * pads[1] + (wo - 1) * stride[1])
    return dict(x_shape=(draw(st.sampled_from([1, 2, 7, 9, 20])), groups, h, w),
                w_shape=(groups * kg, 1, *kernel), stride=stride, pads=pads, dilation=dilation, groups=groups)


@given(case=multiplier_cases(), seed=st.integers(0, 2**31), integers=st.booleans())
def test_depthwise_channel_multiplier_weight_grad_matches_oracle(isa, threads, case, seed, integers):
    """The depthwise backward with several output channels per input channel, asked for by name
    (algo="direct" runs direct_rows on stride-1 layers): dw and db against the oracle, exactly
    with small-integer fills; dx alone and dw alone as separate calls."""
    if isa == "scalar":
        return
    name = f"depthwise_{isa}"
    pads = (case["pads"][0], case["pads"][0], case["pads"][1], case["pads"][1])
    args = (case["stride"], pads, case["dilation"], case["groups"])
    assert name in _C.conv2d_candidates(case["x_shape"], case["w_shape"], *args, backward=True)
    rng = np.random.default_rng(seed)
    fill = (lambda shape: rng.integers(-8, 9, shape).astype(np.float32)) if integers else (
        lambda shape: rng.standard_normal(shape).astype(np.float32))
    x, w = fill(case["x_shape"]), fill(case["w_shape"])
    y = reference.conv2d(x, w, None, *args)
    dy = fill(y.shape)
    want = reference.conv2d_backward(dy, x, w, *args)
    mags = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *args)
    npos = y.shape[0] * y.shape[2] * y.shape[3]
    both = _C.conv2d_backward(dy, x, w, *args, True, True, True, name)
    alone = _C.conv2d_backward(dy, x, w, *args, False, True, True, name)
    assert alone[0] is None
    for got, exp, mag, k, label in zip(both + alone[1:], want + want[1:], mags + mags[1:],
                                       [case["w_shape"][0] // case["groups"] * w.shape[2] * w.shape[3],
                                        npos, npos, npos, npos], ["dx", "dw", "db", "dw alone", "db alone"]):
        if integers:
            assert_exact(got, exp, f"{name} {label}")
        else:
            assert_close(got, exp, mag, k, f"{name} {label}")


# image_blocks (image_blocks.cpp): the forward and both gradients as GEMMs over
# blocks of images, as many per block as keep their columns within
# kBlockColumnFloats (1M floats), the blocks one after another.
_BLOCK_COLUMN_FLOATS = 1 << 20


def _out_size(size, kernel, stride, pad_before, pad_after, dilation):
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


@st.composite
def image_block_cases(draw, several_blocks):
    """Conv calls for image_blocks: small planes (every image in one block, batch
    1 too) or, with several_blocks, planes whose columns let only 1-3 images into
    a block and a batch that needs 2 or 3 blocks, the last one often partial.
    Channels and widths around the 8 and 16 float lanes; strided, dilated,
    asymmetrically padded, grouped."""
    groups = draw(st.integers(1, 2 if several_blocks else 3))
    cg = draw(st.sampled_from([2, 3, 8, 15, 16, 17] if several_blocks else [1, 2, 3, 8, 15, 16, 17]))
    kg = draw(st.sampled_from([1, 2, 5, 8, 15, 16, 17]))
    low = 2 if several_blocks else 1  # columns of at least 8 floats keep integer sums exact
    kernel = (draw(st.integers(low, 3)), draw(st.integers(low, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    reduction = cg * kernel[0] * kernel[1]
    if several_blocks:
        per_block = draw(st.integers(1, 3))
        out_w = draw(st.sampled_from([7, 15, 16, 17, 33]))
        out_h = _BLOCK_COLUMN_FLOATS // (reduction * per_block * out_w)
        batch = draw(st.integers(per_block + 1, 2 * per_block + 1))
    else:
        out_h, out_w = draw(st.integers(1, 5)), draw(st.sampled_from([1, 2, 3, 4, 7, 8, 9, 15, 16, 17]))
        batch = draw(st.integers(1, 4))
    in_h = max(1, (out_h - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1 - pads[0] - pads[1])
    in_w = max(1, (out_w - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1 - pads[2] - pads[3])
    out_h = _out_size(in_h, kernel[0], stride[0], pads[0], pads[1], dilation[0])
    out_w = _out_size(in_w, kernel[1], stride[1], pads[2], pads[3], dilation[1])
    assume(out_h >= 1 and out_w >= 1)
    return dict(x_shape=(batch, groups * cg, in_h, in_w), w_shape=(groups * kg, cg, *kernel),
                args=(stride, pads, dilation, groups), bias=draw(st.booleans()),
                images_per_block=_BLOCK_COLUMN_FLOATS // (reduction * out_h * out_w))


def _check_image_blocks(case, seed, integers):
    """image_blocks' forward and gradients (all three, then dw alone as for a
    first layer) against the oracle: exactly with small-integer fills."""
    rng = np.random.default_rng(seed)

    def fill(shape):
        return (rng.integers(-2, 3, shape) if integers else rng.standard_normal(shape)).astype(np.float32)

    x, w = fill(case["x_shape"]), fill(case["w_shape"])
    b = fill(case["w_shape"][:1]) if case["bias"] else None
    args = case["args"]
    groups = args[3]

    def check(got, want, magnitude, terms, op):
        if integers:
            assert_exact(got, want, op)
        else:
            assert_close(got, want, magnitude, terms, op)

    y = _C.conv2d(x, w, b, *args, "image_blocks")
    magnitude = reference.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), *args)
    check(y, reference.conv2d(x, w, b, *args), magnitude, int(np.prod(w.shape[1:])) + (b is not None),
          "conv2d[image_blocks]")
    dy = fill(y.shape)
    want = reference.conv2d_backward(dy, x, w, *args)
    mags = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *args)
    positions = y.shape[0] * y.shape[2] * y.shape[3]
    terms = [w.shape[0] // groups * w.shape[2] * w.shape[3], positions, positions]
    for wanted in ((True, True, b is not None), (False, True, False)):
        grads = _C.conv2d_backward(dy, x, w, *args, *wanted, "image_blocks")
        for got, exp, mag, k, name, asked in zip(grads, want, mags, terms, ["dx", "dw", "db"], wanted):
            if not asked:
                assert got is None
                continue
            check(got, exp, mag, k, f"conv2d_backward {name}[image_blocks]")


@given(case=image_block_cases(several_blocks=False), seed=st.integers(0, 2**31), integers=st.booleans())
def test_image_blocks_small_planes_match_oracle(isa, threads, case, seed, integers):
    assert case["images_per_block"] >= case["x_shape"][0]  # one block
    _check_image_blocks(case, seed, integers)


@settings(max_examples=8)
@given(case=image_block_cases(several_blocks=True), seed=st.integers(0, 2**31), integers=st.booleans())
def test_image_blocks_several_blocks_match_oracle(isa, threads, case, seed, integers):
    assert case["x_shape"][0] > case["images_per_block"]  # two or more blocks
    _check_image_blocks(case, seed, integers)


@pytest.mark.parametrize("integers", [True, False])
def test_image_blocks_weight_grad_blocks_are_512_positions_or_more(isa, threads, integers):
    """A reduction of 2304 on 4x4 planes: 28 images fit the column bound, but
    the backward's weight gradient takes blocks of at least 512 positions (32
    images): 40 images run as 2 x 20 both ways."""
    case = dict(x_shape=(40, 256, 4, 4), w_shape=(8, 256, 3, 3), args=((1, 1), (1, 1, 1, 1), (1, 1), 1),
                bias=True)
    assert _BLOCK_COLUMN_FLOATS // (256 * 9 * 16) == 28
    _check_image_blocks(case, 43, integers)


@pytest.mark.parametrize("integers", [True, False])
def test_image_blocks_with_weights_packed_once_match_oracle(isa, threads, integers):
    """Several blocks (7 images each) whose products take sgemm's blocked path: the forward's
    weights and the input gradient's transposed weights are packed once for all blocks."""
    case = dict(x_shape=(16, 64, 16, 16), w_shape=(40, 64, 3, 3), args=((1, 1), (1, 1, 1, 1), (1, 1), 1),
                bias=True)
    assert _BLOCK_COLUMN_FLOATS // (64 * 9 * 256) == 7
    assert _C.sgemm_implementation(40, 7 * 256, 64 * 9).startswith("blocked")
    assert _C.sgemm_implementation(64 * 9, 7 * 256, 40, True, False).startswith("blocked")
    _check_image_blocks(case, 44, integers)


@pytest.mark.parametrize("x_shape, stride", [((5, 16, 40, 40), 1), ((3, 8, 33, 90), 2)])
def test_image_blocks_do_not_depend_on_threads_in_deterministic_mode(isa, x_shape, stride):
    """The blocks run one after another and every GEMM sums in a fixed order:
    the thread count changes no bit of any output."""
    rng = np.random.default_rng(41)
    w = rng.standard_normal((24, x_shape[1], 3, 3)).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    args = ((stride, stride), (1, 0, 2, 1), (1, 1), 1)
    previous = cnnkit.get_num_threads(), cnnkit.are_deterministic_algorithms_enabled()
    runs = []
    try:
        cnnkit.use_deterministic_algorithms(True)
        for n in (1, 2, 1):
            cnnkit.set_num_threads(n)
            y = _C.conv2d(x, w, None, *args, "image_blocks")
            dy = np.cos(np.arange(y.size, dtype=np.float32)).reshape(y.shape)
            runs.append((y, *_C.conv2d_backward(dy, x, w, *args, True, True, True, "image_blocks")))
    finally:
        cnnkit.set_num_threads(previous[0])
        cnnkit.use_deterministic_algorithms(previous[1])
    for later in runs[1:]:
        for a, b in zip(runs[0], later):
            np.testing.assert_array_equal(a, b)


# Planes of at most 4x4 with 512 x 512 3x3 weights: auto (the heuristic, as
# autotuning is off in the tests) runs them as image_blocks; small-integer
# fills, so every sum is exact. Strided too, and a 1-image batch.
@pytest.mark.parametrize(
    "x_shape, stride, padding",
    [((2, 512, 4, 4), 1, 1), ((3, 512, 5, 3), 2, 1), ((1, 512, 4, 4), 1, 0), ((3, 512, 2, 2), 1, 1)],
)
def test_image_blocks_integer_fill_is_exact(isa, threads, x_shape, stride, padding):
    w_shape = (512, 512, 3, 3)
    norm = _normalise((3, 3), stride, padding, 1)
    for backward in (False, True):
        impl = _C.conv2d_implementation(x_shape, w_shape, norm[0], norm[1], (1, 1), 1, "auto", backward=backward)
        assert impl == "image_blocks"
    _assert_integer_fill_exact(35, x_shape, w_shape, stride, padding, label="image_blocks")


@pytest.mark.parametrize("stride", [(300, 1), (1, 300)])
def test_depthwise_declines_strides_beyond_its_phase_lists(isa, stride):
    """The input gradient lists kernel rows and columns per phase of the stride,
    for strides up to 256: larger ones run the plain direct loops. (The input
    spans two strides: a stride past the padded input is clamped to its length.)"""
    x_shape = (1, 2) + tuple(5 if s == 1 else 2 * s - 1 for s in stride)
    case = dict(x_shape=x_shape, w_shape=(2, 1, 3, 3), bias=True, stride=stride, padding=1, dilation=1, groups=2)
    x, w, b, args = _case_arrays(case, 33)
    _, pads, _ = _normalise((3, 3), *args[:3])
    for backward in (False, True):
        assert _C.conv2d_implementation(case["x_shape"], case["w_shape"], stride, pads, (1, 1), 2, "direct",
                                        backward=backward) == "direct"
    _check_against_oracle(x, w, b, *args, "direct", np.random.default_rng(34))


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_nan_and_inf_propagate(isa, threads, stride):
    """Infinities and NaN in the input (one in a row's last column, which the
    weight gradient's vectors pass over) and in dy reach exactly the outputs and
    gradients the definition says."""
    rng = np.random.default_rng(32)
    x = rng.standard_normal((2, 3, 11, 21)).astype(np.float32)
    x[0, 1, 4, 20] = np.inf
    x[1, 2, 6, 3] = np.nan
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    norm = _normalise((3, 3), stride, 1, 1)
    y = F.conv2d(x, w, None, stride, 1, groups=3, algo="direct")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy[1, 0, 2, 2] = np.nan
    got = (y,) + F.conv2d_backward(dy, x, w, stride, 1, groups=3, bias_grad=False, algo="direct")[:2]
    want = (reference.conv2d(x, w, None, *norm, 3),) + reference.conv2d_backward(dy, x, w, *norm, 3)[:2]
    with np.errstate(invalid="ignore"):
        mags = (reference.conv2d(np.abs(x), np.abs(w), None, *norm, 3),) + reference.conv2d_backward(
            np.abs(dy), np.abs(x), np.abs(w), *norm, 3)[:2]
    for g, e, m, k, name in zip(got, want, mags, (9, 9, 2 * y.shape[2] * y.shape[3]), ("y", "dx", "dw")):
        assert not np.isfinite(e).all(), name  # the nonfinite values reach each result
        assert_close(g, e, m, k, f"conv2d nonfinite {name}[depthwise]")


# LeNet c2 and scaled-down AlexNet c1 / ResNet stride-2 layers on the channel-vector paths (14-wide
# rows: two AVX-512 7-position tiles), and 7x7 / 9x9 kernels over 9 channels (input-channel
# chunks), small-integer fills.
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding",
    [
        ((3, 6, 14, 14), (16, 6, 5, 5), 1, 0),
        ((2, 3, 43, 43), (96, 3, 11, 11), 4, 0),
        ((2, 16, 15, 15), (40, 16, 3, 3), 2, 1),
        ((2, 32, 14, 14), (64, 32, 5, 5), 1, 2),
        ((2, 16, 27, 27), (64, 16, 3, 3), 2, 1),
        ((2, 9, 20, 20), (64, 9, 7, 7), 2, 3),
        ((2, 9, 23, 23), (32, 9, 9, 9), 2, 0),
    ],
)
def test_direct_cvec_integer_fill_is_exact(isa, threads, x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(22)
    x = rng.integers(-8, 9, size=x_shape).astype(np.float32)
    w = rng.integers(-8, 9, size=w_shape).astype(np.float32)
    b = rng.integers(-8, 9, size=w_shape[0]).astype(np.float32)
    norm = _normalise(w_shape[2:], stride, padding, 1)
    # algo="direct": under AVX2, auto runs strided layers as im2col.
    impl = _C.conv2d_implementation(x_shape, w_shape, norm[0], norm[1], (1, 1), 1, "direct")
    kernel = _channel_vector_kernel(dict(w_shape=w_shape, stride=stride, dilation=1))
    assert impl == ("direct" if isa == "scalar" else f"{kernel}_{isa}")
    y = F.conv2d(x, w, b, stride=stride, padding=padding, algo="direct")
    assert_exact(y, reference.conv2d(x, w, b, *norm, 1), f"conv2d[{impl}]")


@st.composite
def direct_walk_cases(draw):
    """Shapes that run direct_walk: 3-, 5- and 7-wide kernels, output channels
    per group around the vector lanes and the 1- and 2-vector blocks (AVX-512
    takes 1-vector blocks for odd vector counts: 33-48, 65), output
    widths around the tiles (AVX2 14 positions, or 10 for 3-wide kernels on
    rows over 14; AVX-512 12, 10 and 8) and the
    8- and 16-row transposes, rows of several tiles, odd and even output
    heights (AVX-512 takes two rows per tile), vertical strides and dilations."""
    groups = draw(st.sampled_from([1, 1, 1, 2]))
    cg = draw(st.integers(1, 3))
    kg = draw(st.sampled_from([8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 48, 65]))
    kernel = (draw(st.integers(1, 5)), draw(st.sampled_from([3, 5, 7])))
    stride_h = draw(st.integers(1, 3))
    if stride_h == 1 and kg < 16:
        stride_h = 2  # stride 1 runs direct_walk from 16 output channels on
    dilation_h = draw(st.integers(1, 2))
    pads = (draw(st.integers(0, 2)), draw(st.integers(0, (kernel[1] - 1) // 2)))
    span_h = dilation_h * (kernel[0] - 1) + 1
    h = draw(st.integers(max(1, span_h - 2 * pads[0]), 10))
    wo = draw(st.sampled_from([1, 2, 7, 8, 9, 10, 11, 13, 14, 15, 16, 23, 28, 29, 37]))
    return dict(
        x_shape=(draw(st.integers(1, 2)), groups * cg, h, wo + kernel[1] - 1 - 2 * pads[1]),
        w_shape=(groups * kg, cg, *kernel),
        bias=draw(st.booleans()),
        stride=(stride_h, 1),
        padding=pads,
        dilation=(dilation_h, 1),
        groups=groups,
    )


@given(case=direct_walk_cases(), seed=st.integers(0, 2**31))
def test_direct_walk_matches_oracle(isa, threads, case, seed):
    x, w, b, args = _case_arrays(case, seed)
    norm = _normalise(case["w_shape"][2:], *args[:3])
    # Under AVX2, auto runs vertically strided layers as im2col or the direct loops.
    strided = case["stride"][0] > 1
    for algo in ("auto", "direct") if isa == "avx512" or not strided else ("direct",):
        impl = _C.conv2d_implementation(case["x_shape"], case["w_shape"], norm[0], norm[1], norm[2],
                                        case["groups"], algo)
        if isa != "scalar":
            assert impl == f"direct_walk_{isa}"
    y = F.conv2d(x, w, b, *args, algo="direct")
    _assert_forward_matches_oracle(y, x, w, b, norm, case["groups"], f"conv2d[{impl}]")


# direct_walk with small-integer fills: LeNet c2 (one 10-position tile: one
# AVX-512 transpose, two AVX2 ones), 14-wide rows in two AVX-512 2-vector
# tiles, partial channel vectors (17 = 16 + 1, 40 = 32 + 8), 7-wide kernels,
# 40-wide rows (four tiles of 10 positions), 28-wide rows (two AVX2 tiles of 14).
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding",
    [
        ((3, 6, 14, 14), (16, 6, 5, 5), 1, 0),
        ((2, 5, 14, 14), (64, 5, 5, 5), 1, 2),
        ((2, 3, 9, 12), (17, 3, 3, 3), 1, 0),
        ((2, 4, 11, 20), (40, 4, 7, 7), (2, 1), 3),
        ((1, 2, 6, 29), (24, 2, 3, 5), (3, 1), 1),
        ((2, 3, 9, 40), (16, 3, 3, 3), 1, 1),
        ((2, 3, 6, 32), (16, 3, 5, 5), 1, 0),
    ],
)
def test_direct_walk_integer_fill_is_exact(isa, threads, x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(25)
    x = rng.integers(-8, 9, size=x_shape).astype(np.float32)
    w = rng.integers(-8, 9, size=w_shape).astype(np.float32)
    b = rng.integers(-8, 9, size=w_shape[0]).astype(np.float32)
    norm = _normalise(w_shape[2:], stride, padding, 1)
    impl = _C.conv2d_implementation(x_shape, w_shape, norm[0], norm[1], (1, 1), 1, "direct")
    assert impl == ("direct" if isa == "scalar" else f"direct_walk_{isa}")
    y = F.conv2d(x, w, b, stride=stride, padding=padding, algo="direct")
    assert_exact(y, reference.conv2d(x, w, b, *norm, 1), f"conv2d[{impl}]")


# The direct_rows weight gradient: channel blocks and tap blocks around the
# tiles (4 x 6 AVX-512, 3 x 4 AVX2), several images, integer fills.
@pytest.mark.parametrize(
    "x_shape, w_shape, padding",
    [((5, 1, 32, 32), (6, 1, 5, 5), 0), ((4, 6, 14, 14), (16, 6, 5, 5), 0), ((3, 5, 9, 11), (7, 5, 3, 3), 1),
     ((2, 3, 6, 20), (13, 3, 1, 7), (0, 3)), ((9, 2, 5, 5), (1, 2, 2, 2), 0)],
)
def test_direct_rows_weight_grad_integer_fill_is_exact(isa, threads, x_shape, w_shape, padding):
    rng = np.random.default_rng(23)
    x = rng.integers(-8, 9, size=x_shape).astype(np.float32)
    w = rng.integers(-8, 9, size=w_shape).astype(np.float32)
    norm = _normalise(w_shape[2:], 1, padding, 1)
    y = F.conv2d(x, w, padding=padding)
    dy = rng.integers(-8, 9, size=y.shape).astype(np.float32)
    _, dw, _ = F.conv2d_backward(dy, x, w, padding=padding, algo="direct")
    assert_exact(dw, reference.conv2d_backward(dy, x, w, *norm, 1)[1], "conv2d_backward dw[direct]")


def test_direct_rows_weight_grad_does_not_depend_on_threads(isa):
    """Threads split the channels, never the sum over images and positions."""
    import cnnkit

    rng = np.random.default_rng(24)
    # 6 output channels: under a vector for both ISAs, so not kvec's (whose sums
    # depend on the thread count through its slots of images).
    x = rng.standard_normal((7, 4, 12, 12)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((7, 6, 12, 12)).astype(np.float32)
    impl = _C.conv2d_implementation(x.shape, w.shape, (1, 1), (1,) * 4, (1, 1), 1, "direct", backward=True)
    assert impl == ("direct" if isa == "scalar" else f"direct_rows_{isa}")
    previous, grads = cnnkit.get_num_threads(), []
    try:
        for n in (1, 2):
            cnnkit.set_num_threads(n)
            grads.append(F.conv2d_backward(dy, x, w, padding=1, algo="direct")[1])
    finally:
        cnnkit.set_num_threads(previous)
    np.testing.assert_array_equal(grads[0], grads[1])


@pytest.mark.parametrize("algo", ALGOS)
def test_grouped_equals_concatenated_per_group_convs(algo):
    rng = np.random.default_rng(2)
    groups = 3
    x = rng.standard_normal((2, 6, 9, 10)).astype(np.float32)
    w = rng.standard_normal((9, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(9).astype(np.float32)
    y = F.conv2d(x, w, b, padding=1, groups=groups, algo=algo)
    parts = [
        F.conv2d(x[:, 2 * g : 2 * g + 2], w[3 * g : 3 * g + 3], b[3 * g : 3 * g + 3], padding=1, algo=algo)
        for g in range(groups)
    ]
    np.testing.assert_array_equal(y, np.concatenate(parts, axis=1))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = F.conv2d_backward(dy, x, w, padding=1, groups=groups, algo=algo)
    per_group = [
        F.conv2d_backward(dy[:, 3 * g : 3 * g + 3], x[:, 2 * g : 2 * g + 2], w[3 * g : 3 * g + 3], padding=1, algo=algo)
        for g in range(groups)
    ]
    for i, got in enumerate((dx, dw, db)):
        np.testing.assert_array_equal(got, np.concatenate([p[i] for p in per_group], axis=1 if i == 0 else 0))


def _unaligned(a):
    """A C-contiguous float32 copy of ``a`` whose data starts one byte past an alignment boundary."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    view = buf[1:].view(np.float32).reshape(a.shape)
    view[...] = a
    return view


@pytest.mark.parametrize("algo", ALGOS)
def test_views_give_the_same_result_as_contiguous_copies(algo):
    rng = np.random.default_rng(4)
    base_x = rng.standard_normal((2, 4, 22, 11)).astype(np.float32)
    base_w = rng.standard_normal((3, 2, 4, 4)).astype(np.float32)
    b_strided = rng.standard_normal(10).astype(np.float32)[::2]
    views = {
        "sliced": base_x[:, :, ::2, :],
        "transposed": base_x[:, :, :11, :].transpose(0, 1, 3, 2),
        "negative stride": base_x[:, ::-1, ::-2, ::-1],
        "unaligned": _unaligned(base_x[:, :, :11, :]),
    }
    wv = base_w.transpose(3, 1, 2, 0)[:, :, ::-1, :]  # (4, 2, 4, 3), neither contiguous nor forward
    for name, xv in views.items():
        assert not xv.flags.c_contiguous or not xv.flags.aligned, name
        args = dict(padding=(1, 2), groups=2, algo=algo)
        y = F.conv2d(xv, wv, b_strided[:4], **args)
        xc, wc, bc = np.ascontiguousarray(xv), np.ascontiguousarray(wv), np.ascontiguousarray(b_strided[:4])
        np.testing.assert_array_equal(y, F.conv2d(xc, wc, bc, **args), err_msg=name)
        dy_base = rng.standard_normal((y.shape[0], y.shape[1], y.shape[3], y.shape[2])).astype(np.float32)
        dy = dy_base.transpose(0, 1, 3, 2)
        got = F.conv2d_backward(dy, xv, wv, **args)
        want = F.conv2d_backward(np.ascontiguousarray(dy), xc, wc, **args)
        for g, e in zip(got, want):
            np.testing.assert_array_equal(g, e, err_msg=name)


@pytest.mark.parametrize("algo", ALGOS)
def test_nan_and_inf_in_the_input_propagate(algo):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 7, 7] = np.inf
    x[1, 2, 0, 0] = -np.inf
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y = F.conv2d(x, w, b, padding=1, algo=algo)
    norm = ((1, 1), (1, 1, 1, 1), (1, 1))
    expected = reference.conv2d(x, w, b, *norm, 1)
    assert np.isnan(y[0, :, 1:4, 2:5]).all() and np.isfinite(y[0, :, 6:, :]).all()
    assert not np.isfinite(y[1, :, 6:9, 6:9]).any()
    with np.errstate(invalid="ignore"):
        magnitude = reference.conv2d(np.abs(x), np.abs(w), np.abs(b), *norm, 1)
    assert_close(y, expected, magnitude, 27 + 1, f"conv2d[{algo}]")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy[0, 2, 5, 5] = np.nan
    dx, dw, db = F.conv2d_backward(dy, x, w, padding=1, algo=algo)
    assert np.isnan(dx[0, :, 4:7, 4:7]).all() and np.isfinite(dx[1]).all()
    assert np.isnan(dw[2]).all() and np.isnan(db[2]) and np.isfinite(db[[0, 1, 3]]).all()
    want = reference.conv2d_backward(dy, x, w, *norm, 1)
    with np.errstate(invalid="ignore"):
        mags = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *norm, 1)
    for got, exp, mag, k in zip((dx, dw, db), want, mags, (4 * 9, 200, 200)):
        assert_close(got, exp, mag, k, f"conv2d_backward nonfinite[{algo}]")


def test_nonfinite_weight_on_padding_taps_is_algorithm_dependent_as_documented(isa):
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    w[0, 0, 0, 0] = np.inf
    direct = F.conv2d(x, w, padding=1, algo="direct")
    im2col = F.conv2d(x, w, padding=1, algo="im2col")
    # Output (0, 0) reads tap (0, 0) from the padding; output (1, 1) reads it from the input.
    # Only the scalar direct loops skip padded taps; direct_rows reads them as 0*w, as im2col.
    assert np.isnan(im2col[0, 0, 0, 0])
    assert np.isfinite(direct[0, 0, 0, 0]) if isa == "scalar" else np.isnan(direct[0, 0, 0, 0])
    assert direct[0, 0, 1, 1] == np.inf and im2col[0, 0, 1, 1] == np.inf


@pytest.mark.parametrize("algo", ALGOS)
def test_empty_batch_channels_and_sizes(algo):
    rng = np.random.default_rng(1)
    b = rng.standard_normal(4).astype(np.float32)
    # N = 0: empty output, zero weight and bias gradients.
    x = np.zeros((0, 3, 5, 5), np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    assert F.conv2d(x, w, b, algo=algo).shape == (0, 4, 3, 3)
    dx, dw, db = F.conv2d_backward(np.zeros((0, 4, 3, 3), np.float32), x, w, algo=algo)
    assert dx.shape == (0, 3, 5, 5)
    np.testing.assert_array_equal(dw, np.zeros(w.shape))
    np.testing.assert_array_equal(db, np.zeros(4))
    # C = 0: the output is the bias; no output channels: an empty output.
    x = np.zeros((2, 0, 5, 5), np.float32)
    y = F.conv2d(x, np.zeros((4, 0, 3, 3), np.float32), b, algo=algo)
    np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], (2, 4, 3, 3)))
    assert F.conv2d(rng.standard_normal((2, 3, 5, 5)), np.zeros((0, 3, 3, 3)), algo=algo).shape == (2, 0, 3, 3)
    # H = 0 (or W = 0) that the padding makes large enough: every window is padding.
    for x_shape, want in (((2, 3, 0, 5), (2, 4, 2, 7)), ((2, 3, 4, 0), (2, 4, 6, 2))):
        x = np.zeros(x_shape, np.float32)
        w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
        y = F.conv2d(x, w, b, padding=1, algo=algo)
        np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], want))
        dy = rng.standard_normal(want).astype(np.float32)
        dx, dw, db = F.conv2d_backward(dy, x, w, padding=1, algo=algo)
        assert dx.shape == x_shape
        np.testing.assert_array_equal(dw, np.zeros(w.shape))
        assert_close(db, dy.astype(np.float64).sum((0, 2, 3)), np.abs(dy.astype(np.float64)).sum((0, 2, 3)), dy.size // 4, "conv2d_grad_bias")


def test_unbatched_input():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 8, 7)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    y = F.conv2d(x, w, b, padding="same")
    np.testing.assert_array_equal(y, F.conv2d(x[None], w, b, padding="same")[0])
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = F.conv2d_backward(dy, x, w, padding="same")
    want = F.conv2d_backward(dy[None], x[None], w, padding="same")
    np.testing.assert_array_equal(got[0], want[0][0])
    np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="grad_output"):
        F.conv2d_backward(dy[None], x, w, padding="same")


def test_only_requested_gradients_are_computed():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    full = F.conv2d_backward(dy, x, w)
    for flags in [(True, False, False), (False, True, False), (False, False, True), (False, False, False)]:
        got = F.conv2d_backward(dy, x, w, input_grad=flags[0], weight_grad=flags[1], bias_grad=flags[2])
        for requested, g, f in zip(flags, got, full):
            if requested:
                np.testing.assert_array_equal(g, f)
            else:
                assert g is None


def test_dtype_policy():
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, size=(1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    y = F.conv2d(x, w)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, F.conv2d(x.astype(np.float32), w.astype(np.float32)))
    dy = np.ones(y.shape, np.float32)
    bad = {
        "bool": np.ones((1, 2, 5, 5), bool),
        "object": np.ones((1, 2, 5, 5), object),
        "complex": np.ones((1, 2, 5, 5), np.complex64),
    }
    for kind, arr in bad.items():
        with pytest.raises(TypeError, match="input"):
            F.conv2d(arr, w)
        with pytest.raises(TypeError, match="weight"):
            F.conv2d(x, np.ones((3, 2, 3, 3), arr.dtype))
        with pytest.raises(TypeError, match="bias"):
            F.conv2d(x, w, np.ones(3, arr.dtype))
        with pytest.raises(TypeError, match="grad_output"):
            F.conv2d_backward(dy.astype(arr.dtype), x, w)


def test_concurrent_calls_match_serial():
    rng = np.random.default_rng(12)
    inputs = [rng.standard_normal((2, 8, 16, 16)).astype(np.float32) for _ in range(8)]
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    serial = [F.conv2d(x, w, padding=1, algo=algo) for x in inputs for algo in ALGOS]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(F.conv2d, x, w, padding=1, algo=algo) for x in inputs for algo in ALGOS]
        for fut, want in zip(futures, serial):
            np.testing.assert_array_equal(fut.result(), want)


# ---------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------

X = np.zeros((2, 4, 6, 6), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(input=np.zeros((4, 6), np.float32)), ValueError, "input must be 3 or 4-D"),
        (dict(input=np.zeros((1, 2, 4, 6, 6), np.float32)), ValueError, "input must be 3 or 4-D"),
        (dict(weight=np.zeros((6, 4, 3), np.float32)), ValueError, "weight must be 4-D"),
        (dict(weight=np.zeros((6, 2, 3, 3), np.float32)), ValueError, r"input has 4 channels but weight.shape\[1\]=2"),
        (dict(groups=0), ValueError, "groups must be >= 1"),
        (dict(groups=-2), ValueError, "groups must be >= 1"),
        (dict(groups=3, weight=np.zeros((6, 1, 3, 3), np.float32)), ValueError, "groups=3 does not divide the input's 4"),
        (dict(groups=2, weight=np.zeros((5, 2, 3, 3), np.float32)), ValueError, "does not divide the weight's 5 output"),
        (dict(groups=1.0), TypeError, "groups must be an int"),
        (dict(stride=0), ValueError, "stride must be >= 1"),
        (dict(stride=(1, -1)), ValueError, "stride must be >= 1"),
        (dict(dilation=0), ValueError, "dilation must be >= 1"),
        (dict(stride=1.5), TypeError, "stride must be an int"),
        (dict(padding=-1), ValueError, "padding must be >= 0"),
        (dict(padding=(0, -2)), ValueError, "padding must be >= 0"),
        (dict(padding=(1, 2, 3)), ValueError, "padding must be an int or a pair"),
        (dict(padding="full"), ValueError, "padding must be an int, a pair of ints, 'valid' or 'same'"),
        (dict(padding="same", stride=2), ValueError, "'same' is not supported for strided"),
        (dict(algo="reference"), ValueError, "algo must be one of"),
        (dict(algo=None), ValueError, "algo must be one of"),
        (dict(weight=np.zeros((6, 4, 7, 3), np.float32)), ValueError,
         r"kernel height 7 \(kernel 7, dilation 1\) is larger than the padded input height 6"),
        (dict(dilation=(1, 4)), ValueError, r"kernel width 9 \(kernel 3, dilation 4\) is larger than the padded input width 6"),
        (dict(input=np.zeros((2, 4, 0, 6), np.float32)), ValueError, "larger than the padded input height 0"),
        (dict(bias=np.zeros(5, np.float32)), ValueError, r"bias must have shape \(6,\)"),
        (dict(bias=np.zeros((6, 1), np.float32)), ValueError, r"bias must have shape \(6,\)"),
        (dict(padding=2**40), OverflowError, "output height times width"),
        (dict(padding=2**62), OverflowError, "padding plus the input height"),
        (dict(dilation=2**62), OverflowError, "dilation times the kernel height"),
        (dict(padding=2**64), OverflowError, "does not fit"),
        (dict(stride=(1, 2**64)), OverflowError, "does not fit"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    args = dict(input=X, weight=W, bias=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        F.conv2d(**args)
    grad_output = np.zeros((2, 6, 4, 4), np.float32)
    if "bias" not in kwargs:
        del args["bias"]
        with pytest.raises(error, match=match):
            F.conv2d_backward(grad_output, **args)


def test_absurd_output_raises_memory_error_without_touching_memory():
    # 2**48 output elements (1 PiB): the count fits int64, no allocator can provide it.
    with pytest.raises(MemoryError):
        F.conv2d(np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32), padding=2**23)


def test_grad_output_of_wrong_shape():
    for shape in [(2, 6, 4, 5), (2, 5, 4, 4), (1, 6, 4, 4)]:
        with pytest.raises(ValueError, match=r"grad_output must have the conv2d output shape \(2, 6, 4, 4\)"):
            F.conv2d_backward(np.zeros(shape, np.float32), X, W)
    with pytest.raises(ValueError, match="grad_output must be 4-D"):
        F.conv2d_backward(np.zeros((6, 4, 4), np.float32), X, W)


# ---------------------------------------------------------------------------
# PyTorch as a second oracle
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, dilation, groups",
    [
        ((2, 4, 11, 9), (6, 2, 3, 3), 2, 1, 1, 2),
        ((1, 3, 10, 12), (4, 3, 4, 2), 1, "same", (2, 1), 1),
        ((2, 6, 9, 9), (6, 1, 3, 5), (2, 1), (0, 2), 1, 6),
        ((3, 5, 8, 8), (7, 5, 2, 2), 1, "valid", 3, 1),
    ],
)
def test_matches_torch(algo, x_shape, w_shape, stride, padding, dilation, groups):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    kw_args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    with warnings.catch_warnings():
        # PyTorch warns that even kernels with padding="same" may copy the input.
        warnings.simplefilter("ignore", UserWarning)
        ty = torch.nn.functional.conv2d(tx, tw, tb, **kw_args)
    dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(dy))
    norm = _normalise(w_shape[2:], stride, padding, dilation)
    mag_y = reference.conv2d(np.abs(x), np.abs(w), np.abs(b), *norm, groups)
    mags = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *norm, groups)
    y = F.conv2d(x, w, b, **kw_args, algo=algo)
    # Both sides round: twice the single-sided bound.
    assert_close(y, ty.detach().numpy(), mag_y, w_shape[1] * w_shape[2] * w_shape[3] + 1, "conv2d vs torch", c=16)
    got = F.conv2d_backward(dy, x, w, **kw_args, algo=algo)
    npos = dy.shape[0] * dy.shape[2] * dy.shape[3]
    ks = [w_shape[0] // groups * w_shape[2] * w_shape[3], npos, npos]
    for g, t, mag, k in zip(got, (tx.grad, tw.grad, tb.grad), mags, ks):
        assert_close(g, t.numpy(), mag, k, "conv2d_backward vs torch", c=16)


# The stride-1 input gradient runs the direct forward kernel that the dispatch
# picks for the transposed shapes: direct_walk for >= 16 input channels and
# kernels 3, 5 or 7 wide, direct_cvec for other widths on short rows, else
# direct_rows. Integer fills: exact whatever the order of the sums.
@pytest.mark.parametrize(
    "x_shape, w_shape, padding",
    [((3, 32, 14, 14), (24, 32, 5, 5), 2), ((2, 16, 9, 7), (5, 16, 3, 3), 1), ((2, 17, 8, 10), (9, 17, 3, 4), (1, 0)),
     ((2, 16, 20, 20), (8, 16, 3, 3), 1), ((2, 20, 11, 12), (3, 20, 7, 7), (3, 2))],
)
def test_direct_input_grad_integer_fill_is_exact(isa, threads, x_shape, w_shape, padding):
    rng = np.random.default_rng(26)
    x = rng.integers(-8, 9, size=x_shape).astype(np.float32)
    w = rng.integers(-8, 9, size=w_shape).astype(np.float32)
    norm = _normalise(w_shape[2:], 1, padding, 1)
    impl = _C.conv2d_implementation(x_shape, w_shape, *norm, 1, "direct", backward=True)
    assert impl == _backward_kernel(isa, w_shape, 1)
    y = F.conv2d(x, w, padding=padding)
    dy = rng.integers(-8, 9, size=y.shape).astype(np.float32)
    dx, _, _ = F.conv2d_backward(dy, x, w, padding=padding, weight_grad=False, bias_grad=False, algo="direct")
    assert_exact(dx, reference.conv2d_backward(dy, x, w, *norm, 1)[0], f"conv2d_backward dx[{impl}]")


# direct_walk and direct_cvec pack the layer's weights flipped and transposed
# as they read them (no flipped copy): groups, and per-group channel counts
# that leave the last channel block part-filled, for both kernels.
@pytest.mark.parametrize(
    "x_shape, w_shape, padding, groups, kernel",
    [((2, 34, 9, 11), (40, 17, 3, 3), 1, 2, "direct_walk"), ((2, 66, 12, 6), (18, 22, 5, 5), (2, 1), 3, "direct_walk"),
     ((2, 40, 8, 9), (24, 40, 3, 3), 1, 1, "direct_walk"),
     ((2, 40, 7, 9), (34, 20, 3, 4), (1, 2), 2, "direct_cvec"), ((1, 66, 6, 8), (18, 33, 2, 4), (1, 2), 2, "direct_cvec")],
)
def test_flipped_packing_input_grad_is_exact(isa, threads, x_shape, w_shape, padding, groups, kernel):
    if isa == "scalar":
        pytest.skip("the packing kernels are SIMD only")
    rng = np.random.default_rng(31)
    x = rng.integers(-8, 9, size=x_shape).astype(np.float32)
    w = rng.integers(-8, 9, size=w_shape).astype(np.float32)
    norm = _normalise(w_shape[2:], 1, padding, 1)
    y = F.conv2d(x, w, padding=padding, groups=groups)
    # The transposed conv: dy in, dx out, paddings k - 1 - pad.
    (pt, pb, pl, pr), (R, S) = norm[1], w_shape[2:]
    t_padding = (R - 1 - pt, R - 1 - pb, S - 1 - pl, S - 1 - pr)
    t_weight = (x_shape[1], w_shape[0] // groups, R, S)
    assert _C.conv2d_implementation(y.shape, t_weight, (1, 1), t_padding, (1, 1), groups, "direct") == f"{kernel}_{isa}"
    dy = rng.integers(-8, 9, size=y.shape).astype(np.float32)
    for algo in ("auto", "direct"):
        dx, _, _ = F.conv2d_backward(dy, x, w, padding=padding, groups=groups, weight_grad=False, bias_grad=False,
                                     algo=algo)
        assert_exact(dx, reference.conv2d_backward(dy, x, w, *norm, groups)[0], f"conv2d_backward dx[{algo}]")


@pytest.mark.parametrize("x_shape, w_shape, padding", [((3, 32, 14, 14), (24, 32, 5, 5), 2), ((2, 16, 9, 7), (5, 16, 3, 3), 1)])
def test_direct_input_grad_matches_oracle(isa, threads, x_shape, w_shape, padding):
    rng = np.random.default_rng(27)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    norm = _normalise(w_shape[2:], 1, padding, 1)
    dy = rng.standard_normal(F.conv2d(x, w, padding=padding).shape).astype(np.float32)
    dx, _, _ = F.conv2d_backward(dy, x, w, padding=padding, weight_grad=False, bias_grad=False, algo="direct")
    want = reference.conv2d_backward(dy, x, w, *norm, 1)[0]
    mags = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *norm, 1)[0]
    assert_close(dx, want, mags, w_shape[0] * w_shape[2] * w_shape[3], "conv2d_grad_input[direct]")


@st.composite
def kvec_cases(draw):
    """Backward shapes for the kvec weight gradient: output channels per group
    around the lanes and the channel blocks (AVX-512 4 vectors, AVX2 2),
    kernel widths 1-11 (tap blocks of at most 5; pairs of kernel rows for
    blocks of at most 3), strides, dilations and paddings, groups, and batches
    of 1-3 (one slot per thread; input channels split when images are fewer)."""
    groups = draw(st.sampled_from([1, 1, 2]))
    cg = draw(st.integers(1, 4))
    kg = draw(st.sampled_from([8, 9, 16, 17, 24, 31, 32, 48, 64, 65, 80]))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 11)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = (draw(st.integers(0, 2)), draw(st.integers(0, 3)))
    if kernel == (1, 1):
        kernel = (2, 1)  # 1x1 layers stay one GEMM per image
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    h = draw(st.integers(max(1, span[0] - 2 * pads[0]), span[0] + 5))
    w = draw(st.integers(max(1, span[1] - 2 * pads[1]), span[1] + 19))
    x_shape = (draw(st.integers(1, 3)), groups * cg, h, w)
    return dict(x_shape=x_shape, w_shape=(groups * kg, cg, *kernel), bias=draw(st.booleans()), stride=stride,
                padding=pads, dilation=dilation, groups=groups)


@given(case=kvec_cases(), seed=st.integers(0, 2**31))
def test_kvec_backward_matches_oracle(isa, threads, case, seed):
    x, w, b, args = _case_arrays(case, seed)
    _, pads, _ = _normalise(case["w_shape"][2:], *args[:3])
    impl = _C.conv2d_implementation(case["x_shape"], case["w_shape"], _as_pair(case["stride"]), pads,
                                    _as_pair(case["dilation"]), case["groups"], "auto", backward=True)
    if _takes_kvec(isa, case["w_shape"], case["groups"]):
        assert impl == f"kvec_{isa}"
    else:
        assert not impl.startswith("kvec")
    _check_against_oracle(x, w, b, *args, "auto", np.random.default_rng(seed + 1))


# kvec with small-integer fills (every sum exact, whatever its order): LeNet
# c2, the 5x5 pad-2 target layer (64 channels: one full AVX-512 block), 3x3
# layers with 40 channels (a partial block) and strides, AlexNet's 11-wide
# stride-4 first layer (tap blocks 4 + 4 + 3), two groups of 17 channels, and
# a batch of one (input channels split across the threads).
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, groups",
    [
        ((3, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
        ((2, 32, 14, 14), (64, 32, 5, 5), 1, 2, 1),
        ((2, 16, 15, 15), (40, 16, 3, 3), 2, 1, 1),
        ((2, 5, 12, 13), (40, 5, 3, 3), 1, 1, 1),
        ((2, 3, 43, 43), (96, 3, 11, 11), 4, 0, 1),
        ((2, 6, 9, 11), (34, 3, 3, 5), (1, 2), (1, 2), 2),
        ((1, 4, 10, 10), (32, 4, 3, 3), 1, 1, 1),
        # 32+ input channels per part: with threads, each slot's channels in several parts.
        ((2, 96, 9, 9), (48, 96, 3, 3), 1, 1, 1),
        ((3, 128, 7, 6), (64, 64, 3, 3), 2, 1, 2),
        # One vector of channels (16: AVX-512, 8: AVX2), stride 1: tiles of
        # several kernel rows, 4 positions per step and a tail of 1 (13 wide);
        # 3 channels x 3 rows as 3 + 3 + 3 pairs; 5 taps x 2 rows.
        ((3, 16, 11, 13), (16, 16, 3, 3), 1, 1, 1),
        ((2, 3, 9, 10), (16, 3, 3, 3), 1, 1, 1),
        ((2, 5, 10, 14), (8, 5, 5, 5), 1, 2, 1),
        ((2, 4, 12, 9), (16, 4, 2, 5), 1, (1, 2), 1),
    ],
)
def test_kvec_integer_fill_is_exact(isa, threads, x_shape, w_shape, stride, padding, groups):
    norm = _normalise(w_shape[2:], stride, padding, 1)
    impl = _C.conv2d_implementation(x_shape, w_shape, norm[0], norm[1], (1, 1), groups, "auto", backward=True)
    if isa != "scalar" and _takes_kvec(isa, w_shape, groups):
        assert impl == f"kvec_{isa}"
    _assert_integer_fill_exact(29, x_shape, w_shape, stride, padding, 1, groups, bias=False, label=impl)


@st.composite
def kvec_one_vector_cases(draw):
    """Backward shapes whose output channels per group are one vector of the
    drawn ISA (16 under AVX-512, 8 under AVX2): kvec's tiles of up to 4
    (channel, kernel row) pairs evened out over 1-6 channels and 1-5 rows, and
    with stride and dilation 1 across, several positions per step; output
    widths 1-14 around those steps (and their tails), the other strides and
    dilations (one position per step), groups and 1-3 images."""
    groups = draw(st.sampled_from([1, 1, 2]))
    cg = draw(st.integers(1, 6))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    if kernel == (1, 1):
        kernel = (1, 2)
    stride = (draw(st.integers(1, 2)), draw(st.sampled_from([1, 1, 1, 2])))
    dilation = (draw(st.integers(1, 2)), draw(st.sampled_from([1, 1, 1, 2])))
    pads = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    h = draw(st.integers(max(1, span[0] - 2 * pads[0]), span[0] + 4))
    out_w = draw(st.integers(1, 14))
    w = max(1, span[1] - 2 * pads[1] + (out_w - 1) * stride[1])
    return dict(x_shape=(draw(st.integers(1, 3)), groups * cg, h, w), kernel=kernel, bias=draw(st.booleans()),
                stride=stride, padding=pads, dilation=dilation, groups=groups)


@given(case=kvec_one_vector_cases(), seed=st.integers(0, 2**31))
def test_kvec_one_vector_matches_oracle(isa, threads, case, seed):
    lanes = {"avx512": 16, "avx2": 8}.get(isa, 16)
    case = dict(case, w_shape=(case["groups"] * lanes, case["x_shape"][1] // case["groups"], *case["kernel"]))
    x, w, b, args = _case_arrays(case, seed)
    _, pads, _ = _normalise(case["w_shape"][2:], *args[:3])
    impl = _C.conv2d_implementation(case["x_shape"], case["w_shape"], _as_pair(case["stride"]), pads,
                                    _as_pair(case["dilation"]), case["groups"], "auto", backward=True)
    if isa != "scalar":
        assert impl == f"kvec_{isa}"
    _check_against_oracle(x, w, b, *args, "auto", np.random.default_rng(seed + 1))


@pytest.mark.parametrize("threads_used", [2, 8])
def test_kvec_partial_sums_within_the_memory_bound(threads_used):
    """A partial dw of 256 x 9 x 1280 floats: the 64 MiB bound on all slots
    allows 5, so 8 threads over 8 images run 5 slots with their input
    channels split in 2 (2 threads: 2 slots)."""
    isa = supported_isas()[-1]  # the ISA the kernels run (the cap is not set here)
    if isa == "scalar":
        pytest.skip("kvec needs AVX2")
    rng = np.random.default_rng(31)
    x = rng.standard_normal((8, 256, 3, 3)).astype(np.float32)
    w = rng.standard_normal((1280, 256, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((8, 1280, 1, 1)).astype(np.float32)
    previous = cnnkit.get_num_threads()
    cnnkit.set_num_threads(threads_used)
    try:
        # "direct": auto runs this (2.9M weights on a 1x1 plane) as image_blocks under AVX-512.
        # Stride 2 (the same single output position): with AVX2's 8 lanes only a strided layer
        # of this kind takes kvec rather than direct_rows.
        impl = _C.conv2d_implementation(x.shape, w.shape, (2, 2), (0,) * 4, (1, 1), 1, "direct", backward=True)
        assert impl == f"kvec_{isa}"
        _, dw, _ = F.conv2d_backward(dy, x, w, stride=2, input_grad=False, bias_grad=False, algo="direct")
    finally:
        cnnkit.set_num_threads(previous)
    want = np.einsum("nk,ncrs->kcrs", dy[:, :, 0, 0].astype(np.float64), x.astype(np.float64))
    mag = np.einsum("nk,ncrs->kcrs", np.abs(dy[:, :, 0, 0]).astype(np.float64), np.abs(x).astype(np.float64))
    assert_close(dw, want, mag, 8, "conv2d_grad_weight[kvec slots]")


def test_kvec_nan_and_inf_propagate(isa, threads):
    """Infinities and NaN in the input and in dy reach exactly the weight
    gradients the definition says (positions whose taps all read the input)."""
    rng = np.random.default_rng(30)
    x = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
    x[0, 1, 4, 4] = np.inf
    x[1, 2, 6, 3] = np.nan
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 16, 10, 10)).astype(np.float32)
    dy[1, 5, 5, 5] = np.nan
    norm = ((1, 1), (1, 1, 1, 1), (1, 1))
    _, dw, _ = F.conv2d_backward(dy, x, w, padding=1, input_grad=False, bias_grad=False)
    assert np.isnan(dw[5]).all() and np.isnan(dw[:, 2]).all()
    want = reference.conv2d_backward(dy, x, w, *norm, 1)[1]
    with np.errstate(invalid="ignore"):
        mag = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *norm, 1)[1]
    assert_close(dw, want, mag, 200, "conv2d_backward nonfinite[kvec]")


def test_direct_rows_weight_grad_image_blocks(isa, threads):
    """17 images run as L1-sized blocks with a short last block (12 + 5 AVX-512, 15 + 2 AVX2)."""
    rng = np.random.default_rng(28)
    x = rng.integers(-8, 9, size=(17, 3, 10, 10)).astype(np.float32)
    w = rng.integers(-8, 9, size=(5, 3, 3, 3)).astype(np.float32)
    dy = rng.integers(-8, 9, size=(17, 5, 10, 10)).astype(np.float32)
    _, dw, _ = F.conv2d_backward(dy, x, w, padding=1, input_grad=False, bias_grad=False, algo="direct")
    want = reference.conv2d_backward(dy, x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)[1]
    assert_exact(dw, want, "conv2d_backward dw[direct, image blocks]")


def test_direct_rows_zeroes_every_float_it_reads_past_the_last_plane(isa, threads):
    """The input gradient of a 10-wide kernel with dilation 2 over a 2-wide dy is a forward padded
    18 and 18: the last plane's last row reads up to min(pad_left, pad_right) floats past it, and
    a tile more. With one tile of zeros there, it read what an earlier call left in the workspace."""
    impl = f"direct_rows_{isa}"
    args = ((1, 1), (0, 0, 18, 18), (1, 2), 1)
    if impl not in _C.conv2d_candidates((1, 8, 1, 2), (1, 8, 1, 10), *args[:3], 1):
        pytest.skip(f"{impl} is not a candidate here")
    rng = np.random.default_rng(5)
    # An earlier call leaves large values in the thread's padded-input workspace.
    big = (rng.standard_normal((4, 8, 9, 40)) * 1e6).astype(np.float32)
    _C.conv2d(big, rng.standard_normal((8, 8, 3, 3)).astype(np.float32), None, (1, 1), (1, 1, 1, 1), (1, 1), 1, impl)
    x = rng.standard_normal((1, 8, 1, 2)).astype(np.float32)
    w = rng.standard_normal((1, 8, 1, 10)).astype(np.float32)
    got = _C.conv2d(x, w, None, *args, impl)
    want = reference.conv2d(x.astype(np.float64), w.astype(np.float64), None, *args)
    assert_close(got, want, reference.conv2d(np.abs(x), np.abs(w), None, *args), 80, f"conv2d[{impl}]")
    # The layer whose input gradient that is, through the direct backward.
    xb = rng.standard_normal((1, 1, 1, 20)).astype(np.float32)
    wb = rng.standard_normal((8, 1, 1, 10)).astype(np.float32)
    dy = rng.standard_normal((1, 8, 1, 2)).astype(np.float32)
    back = ((1, 1), (0, 0, 0, 0), (1, 2), 1)
    dx = _C.conv2d_backward(dy, xb, wb, *back, True, True, False, "direct")[0]
    want_dx = reference.conv2d_backward(dy.astype(np.float64), xb.astype(np.float64), wb.astype(np.float64), *back)[0]
    mag_dx = reference.conv2d_backward(np.abs(dy), np.abs(xb), np.abs(wb), *back)[0]
    assert_close(dx, want_dx, mag_dx, 8, "conv2d_backward dx[direct]")

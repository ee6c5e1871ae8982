"""Hostile inputs from issue 17: sizes that wrap int64 (huge strides, paddings and dilations)
and any one size 0, under every algorithm and ISA cap; the issue's reproductions; unaligned
views; results that must not depend on the thread count.

Each case runs in a worker process (this file run as a script, cases as JSON on stdin), so a
crash fails the cases it hit rather than the run: many cases share a worker, and when one dies
the first case it did not answer is marked crashed and a new worker takes the rest. Inputs are
small integers, so float32 results equal the float64 oracle exactly; the oracles here walk
the windows with Python integers (cnnkit.reference pads the input, which cannot be done with a
padding of 2^62)."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

INT64_MAX = 2**63 - 1
EXTREMES = [2**31 - 1, 2**31, 2**31 + 1, 2**32, 2**62, INT64_MAX]
# Cases whose output would hold more elements than this are left out: they
# would allocate gigabytes rather than overflow.
MAX_OUTPUTS = 256


# ----------------------------------------------------------------------------
# the worker: runs cases, prints one JSON line per case
# ----------------------------------------------------------------------------


def _taps(start, kernel, dilation, size):
    """(kernel index, input index) of the taps of a window starting at ``start`` inside [0, size)."""
    first = 0 if start >= 0 else (-start + dilation - 1) // dilation
    last = min(kernel - 1, (size - 1 - start) // dilation) if size - 1 - start >= 0 else -1
    return [(k, start + k * dilation) for k in range(first, last + 1)]


def _conv_windows(case):
    """Per output (oh, ow): the (r, ih) and (s, iw) taps of its window."""
    _, _, h, w = case["x"]
    kh, kw = case["w"][2:]
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = case["stride"], case["pads"], case["dilation"]
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    rows = [_taps(oh * sh - pt, kh, dh, h) for oh in range(ho)]
    cols = [_taps(ow * sw - pl, kw, dw, w) for ow in range(wo)]
    return rows, cols


def _conv_oracle(case, x, w, b, dy):
    """y, dx, dw, db of conv2d by walking each output's window (float64)."""
    n, c = x.shape[:2]
    o = w.shape[0]
    groups = case["groups"]
    cg, kg = c // groups, o // groups
    rows, cols = _conv_windows(case)
    y = np.zeros((n, o, len(rows), len(cols)))
    dx, dw = np.zeros(x.shape), np.zeros(w.shape)
    for oh, ow in itertools.product(range(len(rows)), range(len(cols))):
        for k in range(o):
            g = k // kg
            y[:, k, oh, ow] = b[k]
            for (r, ih), (s, iw) in itertools.product(rows[oh], cols[ow]):
                xs = x[:, g * cg:(g + 1) * cg, ih, iw]
                y[:, k, oh, ow] += xs @ w[k, :, r, s]
                dx[:, g * cg:(g + 1) * cg, ih, iw] += np.outer(dy[:, k, oh, ow], w[k, :, r, s])
                dw[k, :, r, s] += dy[:, k, oh, ow] @ xs
    return y, dx, dw, dy.sum(axis=(0, 2, 3))


def _pool_out(size, kernel, stride, pad, dilation, ceil_mode):
    """PyTorch's pooling_output_shape, in Python integers."""
    if size == 0:
        return 0
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_oracle(case, x, dy):
    """out, grad_input of max or average pooling by walking each window (float64)."""
    _, _, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = case["kernel"], case["stride"], case["padding"], case["dilation"]
    ceil, average = case["ceil_mode"], case["op"] == "avg_pool2d"
    ho, wo = _pool_out(h, kh, sh, ph, dh, ceil), _pool_out(w, kw, sw, pw, dw, ceil)
    out, grad = np.zeros(x.shape[:2] + (ho, wo)), np.zeros(x.shape)
    if x.size == 0:
        return out, grad
    for oh, ow in itertools.product(range(ho), range(wo)):
        rows = [i for _, i in _taps(oh * sh - ph, kh, dh, h)]
        cols = [i for _, i in _taps(ow * sw - pw, kw, dw, w)]
        window = x[:, :, rows][:, :, :, cols]
        if average:
            if case["count_include_pad"]:  # clipped to the padded input, not the ceil overhang
                divisor = (min(oh * sh + kh, h + 2 * ph) - oh * sh) * (min(ow * sw + kw, w + 2 * pw) - ow * sw)
            else:
                divisor = len(rows) * len(cols)
            out[:, :, oh, ow] = window.sum(axis=(2, 3)) / divisor
            grad[:, :, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] += (dy[:, :, oh, ow] / divisor)[:, :, None, None]
        else:
            flat = window.reshape(window.shape[:2] + (-1,))
            out[:, :, oh, ow] = flat.max(axis=2)
            first = flat.argmax(axis=2)  # distinct values: the maximum is unique
            for i, j in np.ndindex(first.shape):
                grad[i, j, rows[first[i, j] // len(cols)], cols[first[i, j] % len(cols)]] += dy[i, j, oh, ow]
    return out, grad


def _fill(shape, seed, distinct=False):
    """Small integers (exact in float32); distinct values where max pooling needs a unique maximum."""
    rng = np.random.default_rng(seed)
    if distinct:
        return rng.permutation(int(np.prod(shape))).reshape(shape).astype(np.float32) - 8
    return rng.integers(-3, 4, size=shape).astype(np.float32)


def _check(actual, expected, what):
    actual = np.asarray(actual, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, expected {expected.shape}")
    # Integer fills are exact; the average pool divides, within a few ulps.
    if not np.allclose(actual, expected, rtol=1e-6, atol=1e-6):
        raise AssertionError(f"{what}: {actual.ravel()[:8]} != {expected.ravel()[:8]}")


def _cached(cache, case, compute):
    """compute() once per case that differs only in algorithm and ISA cap."""
    key = json.dumps({k: v for k, v in case.items() if k not in ("id", "algo", "isa")}, sort_keys=True)
    if key not in cache:
        cache[key] = compute()
    return cache[key]


_ORACLES = {}


def _run_conv(case, F):
    x, w = _fill(case["x"], 1), _fill(case["w"], 2)
    b = _fill(case["w"][:1], 3)
    args = dict(stride=tuple(case["stride"]), padding=tuple(case["padding"]), dilation=tuple(case["dilation"]),
                groups=case["groups"], algo=case["algo"])
    if case["expect"] != "ok":
        F.conv2d(x, w, b, **args)
        return
    rows, cols = _conv_windows(case)
    dy = _fill((x.shape[0], w.shape[0], len(rows), len(cols)), 4)
    y, dx, dw, db = _cached(_ORACLES, case, lambda: _conv_oracle(case, x.astype(np.float64), w.astype(np.float64),
                                                                 b.astype(np.float64), dy))
    _check(F.conv2d(x, w, b, **args), y, "conv2d")
    for got, want, name in zip(F.conv2d_backward(dy, x, w, **args), (dx, dw, db), ("dx", "dw", "db")):
        _check(got, want, f"conv2d_backward {name}")


def _run_pool(case, F):
    x = _fill(case["x"], 5, distinct=True)
    geometry = dict(kernel_size=tuple(case["kernel"]), stride=tuple(case["stride"]), padding=tuple(case["padding"]),
                    ceil_mode=case["ceil_mode"])
    if case["op"] == "max_pool2d":
        geometry["dilation"] = tuple(case["dilation"])
        forward = lambda: F.max_pool2d(x, **geometry, return_indices=True)  # noqa: E731
    else:
        geometry["count_include_pad"] = case["count_include_pad"]
        forward = lambda: (F.avg_pool2d(x, **geometry), None)  # noqa: E731
    if case["expect"] != "ok":
        forward()
        return
    out, indices = forward()
    dy = _fill(out.shape, 6)
    want_out, want_grad = _cached(_ORACLES, case, lambda: _pool_oracle(case, x.astype(np.float64), dy.astype(np.float64)))
    _check(out, want_out, case["op"])
    if indices is None:
        grad = F.avg_pool2d_backward(dy, x, **geometry)
    else:
        grad = F.max_pool2d_backward(dy, x, indices, **geometry)
    _check(grad, want_grad, case["op"] + "_backward")


def _run_other(case, F, reference, _C):
    """The ops other than conv and pooling on an array with a 0-size dimension."""
    x = _fill(case["x"], 7)
    op = case["op"]
    if op == "activation":
        for name in ("relu", "tanh", "sigmoid", "elu", "softplus"):
            _check(getattr(F, name)(x), getattr(reference, name)(x), name)
            _check(getattr(F, name + "_backward")(x, x), getattr(reference, name + "_backward")(x, x), name)
    elif op == "linear":
        w, b = _fill(case["w"], 8), _fill(case["w"][:1], 9)
        dy = _fill(x.shape[:-1] + (w.shape[0],), 10)
        _check(F.linear(x, w, b), reference.linear(x, w, b), "linear")
        dx, dw, db = F.linear_backward(dy, x, w)
        for got, want, name in zip((dx, dw, db), reference.linear_backward(dy, x, w), "xwb"):
            _check(got, want, "linear_backward d" + name)
    elif op == "softmax":
        _check(F.softmax(x), reference.softmax(x), "softmax")
        _check(F.log_softmax(x), reference.log_softmax(x), "log_softmax")
        _check(F.softmax_backward(x, F.softmax(x)), reference.softmax_backward(x, reference.softmax(x)), "softmax_b")
    elif op == "batch_norm":  # eval mode: training on an empty batch has no statistics (ValueError)
        c = x.shape[1]
        rm, rv, w, b = np.zeros(c, np.float32), np.ones(c, np.float32), _fill((c,), 11), _fill((c,), 12)
        _check(F.batch_norm(x, rm, rv, w, b), reference.batch_norm(x, rm, rv, w, b)[0], "batch_norm")
        got = F.batch_norm_backward(x, x, rm, rv, w, training=False)
        want = reference.batch_norm_backward(x, x, rm, rv, w, training=False)
        for i, (g, e) in enumerate(zip(got, want)):
            _check(g, e, f"batch_norm_backward[{i}]")
    elif op == "cross_entropy":
        target = np.zeros(x.shape[0], np.int64)
        _check(F.cross_entropy(x, target, reduction="sum"), reference.cross_entropy(x, target, "sum"), "ce")
        _check(F.cross_entropy_backward(x, target, reduction="sum"),
               reference.cross_entropy_backward(x, target, reduction="sum"), "ce_backward")
    elif op == "sgemm":
        a, bm = _fill(case["x"], 13), _fill(case["w"], 14)
        _check(_C.sgemm(a, bm), a.astype(np.float64) @ bm, "sgemm")


def _worker():
    import cnnkit
    import cnnkit.functional as F
    import cnnkit.reference as reference

    for case in json.load(sys.stdin):
        cnnkit.set_max_isa(case.get("isa", "scalar"))
        try:
            if case["op"] == "conv2d":
                _run_conv(case, F)
            elif case["op"] in ("max_pool2d", "avg_pool2d"):
                _run_pool(case, F)
            else:
                _run_other(case, F, reference, cnnkit._C)
            result = "ok" if case["expect"] == "ok" else "no error"
        except AssertionError as e:
            result = f"wrong: {e}"
        except Exception as e:  # noqa: BLE001 - the parent judges which kinds were expected
            result = type(e).__name__
        print(json.dumps({"id": case["id"], "result": result}), flush=True)


# ----------------------------------------------------------------------------
# the parent: builds the cases and runs them in workers
# ----------------------------------------------------------------------------


def _run_in_workers(cases):
    """{id: result} for every case. Cases run in order, so when a worker dies the first case it
    did not answer is the one that killed it: that case gets "crash (exit ...)" and a new
    worker takes the cases after it."""
    for i, case in enumerate(cases):
        case["id"] = i
    results, rest = {}, cases
    while rest:
        proc = subprocess.run([sys.executable, __file__], input=json.dumps(rest), capture_output=True, text=True,
                              timeout=600)
        for line in proc.stdout.splitlines():
            r = json.loads(line)
            results[r["id"]] = r["result"]
        rest = [c for c in rest if c["id"] not in results]
        if rest:
            results[rest[0]["id"]] = f"crash (exit {proc.returncode}): {proc.stderr[-300:]}"
            rest = rest[1:]
    return results


def _isas():
    import cnnkit

    order = ["scalar", "avx2", "avx512"]
    info = cnnkit.build_info()
    return [i for i in order[: order.index(info["detected_isa"]) + 1] if i in info["compiled_isas"]]


def _assert_all_pass(cases):
    results = _run_in_workers(cases)
    bad = [(c, results[c["id"]]) for c in cases if results[c["id"]] != c["expect"]]
    summary = "\n".join(f"{r}: {c}" for c, r in bad[:10])
    assert not bad, f"{len(bad)} of {len(cases)} cases failed, first ones:\n{summary}"
    return results


def _conv_expectation(x, w, stride, pads, dilation):
    """ "ok", or the exception a conv2d call must raise for these sizes."""
    if max(*stride, *pads, *dilation) > INT64_MAX:
        return "OverflowError"
    outs = []
    for size, kernel, s, before, after, d in ((x[2], w[2], stride[0], pads[0], pads[1], dilation[0]),
                                             (x[3], w[3], stride[1], pads[2], pads[3], dilation[1])):
        padded, span = size + before + after, d * (kernel - 1) + 1
        if padded > INT64_MAX or span > INT64_MAX:
            return "OverflowError"
        if span > padded:
            return "ValueError"
        outs.append((padded - span) // s + 1)
    count = x[0] * w[0] * outs[0] * outs[1]
    if outs[0] * outs[1] * 4 > INT64_MAX or count * 4 > INT64_MAX:
        return "OverflowError"
    return "ok" if count <= MAX_OUTPUTS else None


# (input, weight, groups): a general layer, one kvec takes (16 -> 16 3x3), depthwise, and 1x1.
CONV_SHAPES = [((1, 2, 4, 5), (3, 2, 2, 3), 1), ((1, 16, 4, 4), (16, 16, 3, 3), 1),
               ((1, 4, 5, 5), (8, 1, 3, 3), 4), ((2, 3, 4, 4), (2, 3, 1, 1), 1)]


def _axis_settings():
    """(stride, padding, dilation) along one axis: for each extreme v, a stride that leaves one
    window, one that puts the second window in the padding (issue 17's im2col case), a padding
    that is nearly the stride (its SIGSEGV), a dilation the padding makes room for, and a
    padding or dilation that cannot fit (OverflowError, ValueError)."""
    settings = {(1, 1, 1), (2, 0, 1), (2**62, 2**61, 1), (2**32, 2**31 - 2, 1), (2**63, 0, 1), (1, 2**63, 1)}
    for v in EXTREMES:
        settings |= {(v, 1, 1), (v, v // 2, 1), (v, v - 2, 1), (v, v // 2, v // 2), (1, v, 1), (1, 0, v)}
    return sorted(settings)


def _conv_cases(isas):
    cases = []
    for (x, w, groups), (h_axis, w_axis) in itertools.product(
            CONV_SHAPES, [(a, (1, 1, 1)) for a in _axis_settings()] + [(a, a) for a in _axis_settings()]):
        stride, pads, dilation = (h_axis[0], w_axis[0]), (h_axis[1],) * 2 + (w_axis[1],) * 2, (h_axis[2], w_axis[2])
        expect = _conv_expectation(x, w, stride, pads, dilation)
        if expect is None:
            continue
        for algo, isa in itertools.product(("auto", "direct", "im2col"), isas):
            cases.append(dict(op="conv2d", x=x, w=w, groups=groups, stride=stride, padding=(pads[0], pads[2]),
                              pads=pads, dilation=dilation, algo=algo, isa=isa, expect=expect))
    return cases


def _pool_expectation(x, kernel, stride, padding, dilation, ceil_mode):
    if max(*kernel, *stride, *padding, *dilation) > INT64_MAX:
        return "OverflowError"
    if kernel[0] * kernel[1] > INT64_MAX:
        return "OverflowError"
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        return "ValueError"
    outs = []
    for size, k, s, p, d in zip(x[2:], kernel, stride, padding, dilation):
        span = d * (k - 1) + 1
        if span > INT64_MAX or size + span > INT64_MAX:
            return "OverflowError"
        if size + 2 * p < span:
            return "ValueError"
        out = _pool_out(size, k, s, p, d, ceil_mode)
        if out > MAX_OUTPUTS or any(not _taps(o * s - p, k, d, size) for o in range(out)):
            return None if out > MAX_OUTPUTS else "ValueError"
        outs.append(out)
    return "ok" if x[0] * x[1] * outs[0] * outs[1] <= MAX_OUTPUTS else None


def _pool_cases(isas):
    cases = []
    axes = {(2, 2, 0, 1), (3, 1, 1, 1)}  # kernel, stride, padding, dilation
    for v in EXTREMES + [2**63]:
        axes |= {(2, v, 1, 1), (3, v, 1, 1), (v, v, v // 2, 1), (v, 1, v // 2, 1), (2, v, 1, v),
                 (v, v // 2 + 1, v // 2, 1)}
    for op, x, ceil_mode, (h, w) in itertools.product(
            ("max_pool2d", "avg_pool2d"), [(1, 2, 4, 5)], (False, True),
            [(a, (2, 2, 0, 1)) for a in sorted(axes)] + [(a, a) for a in sorted(axes)]):
        kernel, stride, padding, dilation = zip(h, w)
        if op == "avg_pool2d" and max(dilation) > 1:
            continue
        expect = _pool_expectation(x, kernel, stride, padding, dilation, ceil_mode)
        if expect is None:
            continue
        for isa, include_pad in itertools.product(isas, (True, False) if op == "avg_pool2d" else (True,)):
            cases.append(dict(op=op, x=x, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                              ceil_mode=ceil_mode, count_include_pad=include_pad, isa=isa, expect=expect))
    return cases


def test_extreme_strides_paddings_and_dilations_never_crash_or_wrap():
    """2^31±1, 2^32, 2^62, 2^63-1 as stride, padding and dilation of every conv algorithm and
    pooling op (ceil_mode too) under every ISA cap: the oracle's answer, or OverflowError /
    ValueError where a size cannot fit or the kernel does not."""
    isas = _isas()
    cases = _conv_cases(isas) + _pool_cases(isas)
    results = _assert_all_pass(cases)
    # The sweep must exercise right answers with huge values, not only errors.
    huge_ok = [c for c in cases if results[c["id"]] == "ok" and max(*c["stride"], *c["padding"]) >= 2**31]
    assert len(huge_ok) > 100


def _zero_cases(isas):
    cases = []
    # Any one of N, C, out channels, H, W 0; H or W 0 with and without enough padding.
    for x, w, groups, pad in [((0, 3, 5, 5), (4, 3, 3, 3), 1, 1), ((2, 0, 5, 5), (4, 0, 3, 3), 1, 1),
                              ((2, 3, 5, 5), (0, 3, 3, 3), 1, 1), ((2, 3, 0, 5), (4, 3, 3, 3), 1, 1),
                              ((2, 3, 5, 0), (4, 3, 3, 3), 1, 1), ((2, 3, 0, 5), (4, 3, 3, 3), 1, 0),
                              ((2, 3, 0, 0), (4, 3, 1, 1), 1, 0), ((2, 0, 5, 5), (0, 0, 3, 3), 1, 1),
                              ((0, 4, 5, 5), (4, 1, 3, 3), 4, 1), ((2, 4, 0, 5), (8, 1, 3, 3), 4, 2),
                              ((2, 16, 0, 6), (32, 16, 3, 3), 1, 1), ((1, 0, 4, 4), (16, 0, 3, 3), 1, 1),
                              ((2, 3, 5, 5), (4, 3, 0, 3), 1, 1), ((2, 3, 5, 5), (4, 3, 3, 0), 1, 1)]:
        for stride in (1, 2):
            pads = (pad,) * 4
            if 0 in w[2:]:
                expect = "ValueError"
            else:
                expect = _conv_expectation(x, w, (stride, stride), pads, (1, 1))
            for algo, isa in itertools.product(("auto", "direct", "im2col"), isas):
                cases.append(dict(op="conv2d", x=x, w=w, groups=groups, stride=(stride, stride), padding=(pad, pad),
                                  pads=pads, dilation=(1, 1), algo=algo, isa=isa, expect=expect))
    for x, op, ceil_mode, isa in itertools.product([(0, 2, 4, 4), (2, 0, 4, 4), (2, 2, 0, 4), (2, 2, 4, 0)],
                                                   ("max_pool2d", "avg_pool2d"), (False, True), isas):
        cases.append(dict(op=op, x=x, kernel=(2, 2), stride=(2, 2), padding=(1, 1), dilation=(1, 1),
                          ceil_mode=ceil_mode, count_include_pad=True, isa=isa, expect="ok"))
    others = [("activation", (0, 3, 4, 4), None), ("activation", (2, 0, 4, 4), None),
              ("activation", (2, 3, 0, 0), None), ("linear", (0, 5), (3, 5)), ("linear", (4, 0), (3, 0)),
              ("linear", (4, 5), (0, 5)), ("softmax", (0, 5), None), ("softmax", (4, 0), None),
              ("batch_norm", (0, 3, 4, 4), None), ("batch_norm", (2, 0, 4, 4), None),
              ("batch_norm", (2, 3, 0, 4), None), ("cross_entropy", (0, 5), None),
              ("sgemm", (0, 4), (4, 3)), ("sgemm", (3, 0), (0, 5)), ("sgemm", (3, 4), (4, 0))]
    for (op, x, w), isa in itertools.product(others, isas):
        cases.append(dict(op=op, x=x, w=w, isa=isa, expect="ok"))
    return cases


def test_any_one_size_zero_gives_empty_or_zero_results():
    """N, C, out channels, H, W (and the kernel's sizes) 0 in turn: conv under every algorithm,
    pooling, activations, linear, softmax, batch norm, cross-entropy and GEMM, forward and
    backward, under every ISA cap, match the oracle (a kernel size of 0 is a ValueError)."""
    _assert_all_pass(_zero_cases(_isas()))


# ----------------------------------------------------------------------------
# issue 17's reproductions, each exactly as reported, in a worker process
# ----------------------------------------------------------------------------

_PRELUDE = """
import itertools, numpy as np, cnnkit, cnnkit.functional as F
o = lambda *shape: np.ones(shape, np.float32)
x16 = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) + 1
ISAS = {isas!r}
"""

REPRODUCTIONS = {
    # 1: SIGFPE in the AVX2/AVX-512 weight gradient with 0 output channels.
    "conv2d_backward 0 output channels": """
for isa, algo in itertools.product(ISAS, ("auto", "direct", "im2col")):
    cnnkit.set_max_isa(isa)
    dx, dw, db = F.conv2d_backward(np.ones((2,0,3,3),np.float32), np.ones((2,3,5,5),np.float32),
                                   np.ones((0,3,3,3),np.float32), algo=algo)
    assert dx.shape == (2, 3, 5, 5) and not dx.any() and dw.shape == (0, 3, 3, 3) and db.shape == (0,)
""",
    # 2: SIGSEGV from a padded plane that overflows int64 (one window, all padding).
    "conv2d im2col stride 2^32 padding 2^31-2": """
for isa in ISAS:
    cnnkit.set_max_isa(isa)
    y = F.conv2d(np.ones((1,1,4,4),np.float32), np.ones((1,1,1,1),np.float32),
                 stride=2**32, padding=2**31-2, algo="im2col")
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 0
""",
    "conv2d_backward 16->32 3x3 stride 2^32 padding 2^31-2": """
for isa in ISAS:
    cnnkit.set_max_isa(isa)
    dx, dw, db = F.conv2d_backward(o(1, 32, 1, 1), o(1, 16, 4, 4), o(32, 16, 3, 3), stride=2**32, padding=2**31-2)
    assert not dx.any() and not dw.any() and (db == 1).all()
""",
    # 3: wrong answers from the same wrap-around.
    "conv2d im2col stride (2^62, 1) padding (2^61, 2)": """
for isa in ISAS:
    cnnkit.set_max_isa(isa)
    y = F.conv2d(x16, o(1, 1, 1, 1), stride=(2**62, 1), padding=(2**61, 2), algo="im2col")
    assert y.shape == (1, 1, 2, 8) and not y.any(), y  # both rows' windows lie in the padding
""",
    "conv2d direct stride 2^63-1": """
for isa in ISAS:
    cnnkit.set_max_isa(isa)
    y = F.conv2d(x16, o(1, 1, 1, 1), stride=2**63-1, algo="direct")
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 1, y
""",
    "pooling stride 2^63-1 ceil_mode": """
for isa in ISAS:
    cnnkit.set_max_isa(isa)
    assert F.max_pool2d(x16, 2, stride=2**63-1, ceil_mode=True).tolist() == [[[[6.0]]]]
    assert F.avg_pool2d(x16, 2, stride=2**63-1, ceil_mode=True).tolist() == [[[[3.5]]]]
""",
}


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_issue_17_reproductions(name):
    code = _PRELUDE.format(isas=_isas()) + REPRODUCTIONS[name]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"


# ----------------------------------------------------------------------------
# 4: unaligned views
# ----------------------------------------------------------------------------


def _unaligned(a):
    """A copy of ``a`` whose data starts one byte past an aligned address, as
    np.frombuffer(buf, offset=1) makes."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    view = np.frombuffer(buf, a.dtype, a.size, offset=1).reshape(a.shape)
    view[...] = a
    assert not view.flags.aligned
    return view


def test_unaligned_inputs_give_the_aligned_results(isa):
    import cnnkit
    import cnnkit.functional as F

    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (2, 3, 6, 6)).astype(np.float32)
    w = rng.integers(-3, 4, (4, 3, 3, 3)).astype(np.float32)
    y = F.conv2d(x, w, padding=1)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    calls = [
        lambda x, w, y: F.tanh(x),
        lambda x, w, y: F.relu_backward(x, x),
        lambda x, w, y: F.conv2d(x, w, padding=1),
        lambda x, w, y: F.conv2d_backward(y, x, w, padding=1),
        lambda x, w, y: F.max_pool2d(x, 2, return_indices=True),
        lambda x, w, y: F.avg_pool2d_backward(y[:, :, :3, :3], y, 2),
        lambda x, w, y: F.batch_norm(x, rm, rv),
        lambda x, w, y: F.batch_norm_backward(x, x, None, None, np.ones(3, np.float32)),
        lambda x, w, y: F.linear(x.reshape(6, 36), y.reshape(8, 36)),
        lambda x, w, y: cnnkit._C.sgemm(x.reshape(6, -1), y.reshape(-1, 4)[:36]),
        lambda x, w, y: F.cross_entropy(x.reshape(2, -1), np.array([1, 2])),
    ]
    for call in calls:
        want = call(x, w, y)
        got = call(_unaligned(x), _unaligned(w), _unaligned(y))
        for a, b in zip(want if isinstance(want, tuple) else (want,), got if isinstance(got, tuple) else (got,)):
            np.testing.assert_array_equal(a, b)
    _, idx = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(F.max_pool2d_backward(x[:, :, :3, :3], x, _unaligned(idx), 2),
                                  F.max_pool2d_backward(x[:, :, :3, :3], x, idx, 2))


def test_unaligned_arrays_written_in_place_are_refused():
    import cnnkit.functional as F

    x = np.ones((2, 3, 4, 4), np.float32)
    for name in ("running_mean", "running_var"):
        stats = {"running_mean": np.zeros(3, np.float32), "running_var": np.ones(3, np.float32)}
        stats[name] = _unaligned(stats[name])
        with pytest.raises(ValueError, match=name + " must be aligned"):
            F.batch_norm(x, stats["running_mean"], stats["running_var"], training=True)


# ----------------------------------------------------------------------------
# 8: the thread count does not change results
# ----------------------------------------------------------------------------


def test_results_do_not_depend_on_the_thread_count(isa):
    """With deterministic algorithms on, conv's weight gradient (every algorithm) gives the same
    bits with 1, 2 and 3 threads (3 > the cores here: the pool allows it); batch norm's
    statistics, bias and linear gradients and the losses do so in any mode."""
    import cnnkit
    import cnnkit.functional as F

    rng = np.random.default_rng(0)
    r = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    convs = [(r(16, 16, 14, 14), r(32, 16, 3, 3), 1, 1), (r(16, 16, 14, 14), r(32, 16, 3, 3), 2, 1),
             (r(8, 32, 14, 14), r(32, 1, 3, 3), 1, 32), (r(32, 6, 14, 14), r(16, 6, 5, 5), 1, 1)]
    # Large enough that every op here splits its work across threads.
    x2, w2, labels = r(1024, 128), r(64, 128), rng.integers(0, 64, 1024)
    xb = r(32, 16, 20, 20)

    def run():
        out = []
        cnnkit.use_deterministic_algorithms(True)
        for x, w, stride, groups in convs:
            dy = r(*F.conv2d(x, w, stride=stride, padding=1, groups=groups).shape)
            for algo in ("auto", "direct", "im2col"):
                out += F.conv2d_backward(dy, x, w, stride=stride, padding=1, groups=groups, algo=algo)
        cnnkit.use_deterministic_algorithms(False)
        out += F.linear_backward(r(1024, 64), x2, w2)
        rm, rv = np.zeros(16, np.float32), np.ones(16, np.float32)
        out += [F.batch_norm(xb, rm, rv, training=True), rm, rv]
        out += F.batch_norm_backward(xb, xb, None, None, np.ones(16, np.float32))
        out += [np.float32(F.cross_entropy(x2[:, :64], labels)), F.cross_entropy_backward(x2[:, :64], labels)]
        return out

    threads = cnnkit.get_num_threads()
    assert not cnnkit.are_deterministic_algorithms_enabled()
    with pytest.raises(TypeError, match="mode must be a bool"):
        cnnkit.use_deterministic_algorithms(1)
    cnnkit.use_deterministic_algorithms(True)
    assert cnnkit.are_deterministic_algorithms_enabled()
    cnnkit.use_deterministic_algorithms(False)
    try:
        results = {}
        for n in (1, 2, 3):
            cnnkit.set_num_threads(n)
            rng = np.random.default_rng(1)
            results[n] = run()
    finally:
        cnnkit.set_num_threads(threads)
        cnnkit.use_deterministic_algorithms(False)
    for n in (2, 3):
        for i, (a, b) in enumerate(zip(results[1], results[n])):
            np.testing.assert_array_equal(a, b, err_msg=f"output {i} with {n} threads")


if __name__ == "__main__":
    _worker()

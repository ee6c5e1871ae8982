"""The measured conv algorithm choice (cnnkit.autotune): every candidate it may
pick against the float64 oracle, the choice itself, and its cache file (round
trip, two writing processes, corrupt and foreign files)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnkit
from cnnkit import _C, reference
from cnnkit import functional as F
from tolerance import assert_close, assert_exact, winograd_5x5_rounds

# Channel counts and widths around the 8 and 16 float lanes.
_AROUND_LANES = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17]


def _draw_geometry(draw, max_kernel, max_pad):
    """Kernel, stride, dilation and padding, and the smallest input height and width they allow."""
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, max_pad)) for _ in range(4))
    h_min = max(1, dilation[0] * (kernel[0] - 1) + 1 - pads[0] - pads[1])
    w_min = max(1, dilation[1] * (kernel[1] - 1) + 1 - pads[2] - pads[3])
    return kernel, stride, dilation, pads, h_min, w_min


@st.composite
def conv_shapes(draw):
    depthwise = draw(st.integers(0, 3)) == 0
    groups = draw(st.integers(2, 4)) if depthwise else draw(st.sampled_from([1, 1, 1, 2]))
    cg = 1 if depthwise else draw(st.sampled_from(_AROUND_LANES))
    kg = draw(st.sampled_from([1, 2]) if depthwise else st.sampled_from(_AROUND_LANES))
    kernel, stride, dilation, pads, h_min, w_min = _draw_geometry(draw, 5, 2)
    h = draw(st.integers(h_min, h_min + 9))
    w = draw(st.sampled_from(sorted({w_min, w_min + 1, 7, 8, 9, 15, 16, 17, w_min + 3} - set(range(w_min)))))
    return dict(x_shape=(draw(st.integers(1, 3)), groups * cg, h, w), w_shape=(groups * kg, cg, *kernel),
                stride=stride, pads=pads, dilation=dilation, groups=groups, bias=draw(st.booleans()))


def _arrays(case, seed, integers):
    rng = np.random.default_rng(seed)
    if integers:
        draw = lambda shape: rng.integers(-3, 4, shape).astype(np.float32)
    else:
        draw = lambda shape: rng.standard_normal(shape).astype(np.float32)
    x, w = draw(case["x_shape"]), draw(case["w_shape"])
    b = draw((case["w_shape"][0],)) if case["bias"] else None
    return x, w, b


def _args(case):
    return case["stride"], case["pads"], case["dilation"], case["groups"]


def _check_forward(y, x, w, b, case, integers, op):
    norm = _args(case)
    expected = reference.conv2d(x, w, b, *norm)
    if integers:
        assert_exact(y, expected, op)
        return
    magnitude = reference.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), *norm)
    assert_close(y, expected, magnitude, int(np.prod(w.shape[1:])) + (b is not None), op)


def _check_backward(grads, dy, x, w, case, integers, op):
    norm = _args(case)
    want = reference.conv2d_backward(dy, x, w, *norm)
    mags = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *norm)
    npos = dy.shape[0] * dy.shape[2] * dy.shape[3]
    ks = [w.shape[0] // case["groups"] * w.shape[2] * w.shape[3], npos, npos]
    for got, exp, mag, k, name in zip(grads, want, mags, ks, ["dx", "dw", "db"]):
        if got is None:
            continue
        if integers:
            assert_exact(got, exp, f"{op} {name}")
        else:
            assert_close(got, exp, mag, k, f"{op} {name}")


@given(case=conv_shapes(), seed=st.integers(0, 2**31), integers=st.booleans())
def test_every_candidate_matches_the_oracle(isa, case, seed, integers):
    """Whatever the measurement picks is one of these, so each must be right on its own."""
    x, w, b = _arrays(case, seed, integers)
    y_shape = None
    for name in _C.conv2d_candidates(case["x_shape"], case["w_shape"], *_args(case)):
        y = _C.conv2d(x, w, b, *_args(case), name)
        # Winograd F(2x2, 5x5) may round fills this large: then within the tolerance rule.
        rounds = name == "plan_winograd" and winograd_5x5_rounds(case["w_shape"][2:], case["w_shape"][1], 3, 3)
        _check_forward(y, x, w, b, case, integers and not rounds, f"conv2d candidate {name}")
        y_shape = y.shape
    dy = _arrays(dict(case, x_shape=y_shape, bias=False), seed + 1, integers)[0]
    for name in _C.conv2d_candidates(case["x_shape"], case["w_shape"], *_args(case), backward=True):
        # The first layer's backward (no dx) is a separate call and choice.
        for wanted in ((True, True, b is not None), (False, True, False)):
            grads = _C.conv2d_backward(dy, x, w, *_args(case), *wanted, name)
            _check_backward(grads, dy, x, w, case, integers, f"conv2d_backward candidate {name}")


@st.composite
def small_plane_shapes(draw):
    """Planes of at most 8x8 output positions (tap_gemm's), padding up to 3 so that some taps
    reach no position at all, strided, dilated and grouped."""
    groups = draw(st.sampled_from([1, 1, 2]))
    cg, kg = draw(st.sampled_from(_AROUND_LANES)), draw(st.sampled_from(_AROUND_LANES))
    kernel, stride, dilation, pads, h_min, w_min = _draw_geometry(draw, 3, 3)
    h, w = draw(st.integers(h_min, h_min + 5)), draw(st.integers(w_min, w_min + 5))
    out_h = (h + pads[0] + pads[1] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (w + pads[2] + pads[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    assume(out_h * out_w <= 64)
    return dict(x_shape=(draw(st.integers(1, 3)), groups * cg, h, w), w_shape=(groups * kg, cg, *kernel),
                stride=stride, pads=pads, dilation=dilation, groups=groups, bias=draw(st.booleans()))


@given(case=small_plane_shapes(), seed=st.integers(0, 2**31), integers=st.booleans())
def test_tap_gemm_matches_the_oracle(isa, threads, case, seed, integers):
    """One GEMM per tap over the positions it reaches: forward and every gradient subset."""
    x, w, b = _arrays(case, seed, integers)
    assert "tap_gemm" in _C.conv2d_candidates(case["x_shape"], case["w_shape"], *_args(case))
    y = _C.conv2d(x, w, b, *_args(case), "tap_gemm")
    _check_forward(y, x, w, b, case, integers, "conv2d tap_gemm")
    dy = _arrays(dict(case, x_shape=y.shape, bias=False), seed + 1, integers)[0]
    for wanted in ((True, True, True), (False, True, False), (True, False, False)):
        grads = _C.conv2d_backward(dy, x, w, *_args(case), *wanted, "tap_gemm")
        _check_backward(grads, dy, x, w, case, integers, "conv2d_backward tap_gemm")


def test_the_heuristic_pick_comes_first_and_reference_is_never_timed(isa):
    shapes = [((2, 16, 12, 12), (16, 16, 3, 3)), ((2, 32, 9, 9), (32, 1, 3, 3)), ((1, 3, 20, 20), (8, 3, 1, 1))]
    for x_shape, w_shape in shapes:
        groups = x_shape[1] // w_shape[1]
        args = ((1, 1), (1, 1, 1, 1), (1, 1), groups)
        for backward in (False, True):
            names = _C.conv2d_candidates(x_shape, w_shape, *args, backward=backward)
            assert names[0] == _C.conv2d_implementation(x_shape, w_shape, *args, "auto", backward)
            assert "reference" not in names and len(set(names)) == len(names)
            if isa == "scalar":
                assert not any(n.endswith(("_avx2", "_avx512")) for n in names)


def test_an_unknown_implementation_name_is_a_value_error_naming_the_candidates():
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="candidates are .*im2col"):
        _C.conv2d(x, w, None, (1, 1), (0,) * 4, (1, 1), 1, "no_such_kernel")
    with pytest.raises(ValueError, match="algo must be one of"):
        F.conv2d(x, w, algo="im2col_avx2")


@settings(max_examples=15)
@given(case=conv_shapes(), seed=st.integers(0, 2**31))
def test_measured_choice_is_a_candidate_and_matches_the_oracle(isa, threads, autotune, case, seed):
    x, w, b = _arrays(case, seed, False)
    ph, pw = max(case["pads"][:2]), max(case["pads"][2:])
    case = dict(case, pads=(ph, ph, pw, pw))  # the symmetric padding functional takes
    kw = dict(stride=case["stride"], padding=(ph, pw), dilation=case["dilation"], groups=case["groups"])
    y = F.conv2d(x, w, b, **kw)
    _check_forward(y, x, w, b, case, False, "conv2d measured")
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    grads = F.conv2d_backward(dy, x, w, **kw, bias_grad=b is not None)
    _check_backward(grads, dy, x, w, case, False, "conv2d_backward measured")
    for backward in (False, True):
        chosen = _C.conv2d_implementation(x.shape, w.shape, *_args(case), "auto", backward)
        assert chosen in _C.conv2d_candidates(x.shape, w.shape, *_args(case), backward=backward)
    chosen = set(cnnkit.autotune.entries().values())
    assert chosen, "a measured call leaves its winner in the cache"
    # Later calls run the cached winner: the same bits as the first.
    np.testing.assert_array_equal(F.conv2d(x, w, b, **kw), y)


def test_measuring_changes_results_only_within_the_tolerance_rule(autotune):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 16, 14, 14)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    case = dict(stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    measured = F.conv2d(x, w, padding=1)
    cnnkit.autotune.set_enabled(False)
    heuristic = F.conv2d(x, w, padding=1)
    _check_forward(measured, x, w, None, case, False, "conv2d measured")
    _check_forward(heuristic, x, w, None, case, False, "conv2d heuristic")
    magnitude = reference.conv2d(np.abs(x), np.abs(w), None, *_args(case))
    # Two float32 results each within the rule of the oracle are within twice the rule of each other.
    assert_close(measured, heuristic, 2 * magnitude, 16 * 9, "conv2d measured vs heuristic")


def test_deterministic_mode_never_measures(autotune):
    x, w = np.ones((2, 8, 10, 10), np.float32), np.ones((16, 8, 3, 3), np.float32)
    cnnkit.use_deterministic_algorithms(True)
    try:
        assert not cnnkit.autotune.enabled()
        F.conv2d(x, w, padding=1)
        assert cnnkit.autotune.entries() == {}
        assert not os.path.exists(cnnkit.autotune.cache_file())
    finally:
        cnnkit.use_deterministic_algorithms(False)
    assert cnnkit.autotune.enabled()
    F.conv2d(x, w, padding=1)
    assert len(cnnkit.autotune.entries()) == 1


def test_the_heuristic_runs_when_off_and_the_cache_stays_untouched():
    assert not cnnkit.autotune.enabled()  # conftest: CNNKIT_AUTOTUNE=0
    before = cnnkit.autotune.entries()
    F.conv2d(np.ones((1, 4, 9, 9), np.float32), np.ones((8, 4, 3, 3), np.float32))
    assert cnnkit.autotune.entries() == before


def test_set_enabled_and_clear_check_their_arguments():
    with pytest.raises(TypeError, match="mode"):
        cnnkit.autotune.set_enabled(1)
    with pytest.raises(TypeError, match="disk"):
        cnnkit.autotune.clear("yes")


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNKIT_CACHE_DIR", str(tmp_path / "a"))
    assert cnnkit.autotune.cache_file() == str(tmp_path / "a" / "autotune.txt")
    monkeypatch.delenv("CNNKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cnnkit.autotune.cache_file() == str(tmp_path / "xdg" / "cnnkit" / "autotune.txt")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cnnkit.autotune.cache_file() == str(tmp_path / "home" / ".cache" / "cnnkit" / "autotune.txt")


# A child process that measures the given conv shapes and prints what it then knows.
_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import cnnkit
    from cnnkit import functional as F
    for c in json.loads(sys.argv[1]):
        x = np.ones((1, c, 8, 8), np.float32)
        F.conv2d(x, np.ones((c, c, 3, 3), np.float32), padding=1)
    print(json.dumps([cnnkit.autotune.enabled(), cnnkit.autotune.entries()]))
""")


def _child(cache_dir, channels, autotune="1"):
    env = dict(os.environ, CNNKIT_CACHE_DIR=str(cache_dir), CNNKIT_AUTOTUNE=autotune)
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(channels)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(proc):
    import json

    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_cache_file_round_trip_between_processes(autotune):
    x, w = np.ones((2, 8, 12, 12), np.float32), np.ones((16, 8, 3, 3), np.float32)
    F.conv2d(x, w, padding=1)
    F.conv2d_backward(np.ones((2, 16, 12, 12), np.float32), x, w, padding=1)
    ours = cnnkit.autotune.entries()
    assert len(ours) == 2 and any("forward" in k for k in ours) and any("backward+dx+dw" in k for k in ours)
    with open(cnnkit.autotune.cache_file()) as f:
        text = f.read()
    assert text.startswith("cnnkit-autotune 1\nsignature ") and all(k in text for k in ours)
    enabled, theirs = _result(_child(autotune, []))
    assert enabled and theirs == ours
    # The environment switch: off in a fresh process, and the file is then not even read.
    enabled, theirs = _result(_child(autotune, [], autotune="0"))
    assert not enabled


def test_two_processes_writing_at_once_keep_both_sets_of_choices(autotune):
    a = list(range(1, 13))
    b = list(range(7, 19))  # overlapping: both processes store some of the same keys
    procs = [_child(autotune, a), _child(autotune, b)]
    results = [_result(p) for p in procs]
    cnnkit.autotune.clear(disk=False)
    # A fresh read of the file: every shape either process measured is there.
    merged = _result(_child(autotune, []))[1]
    assert len(merged) == len(set(a) | set(b)) == 18
    for _, entries in results:
        assert set(entries) <= set(merged)
    assert not [f for f in os.listdir(autotune) if ".tmp." in f]


@pytest.mark.parametrize("content", [
    b"",
    b"\x00\xff\xfe garbage \x00" * 100,
    b"cnnkit-autotune 1\n",
    b"cnnkit-autotune 1\nsignature \n",
    b"cnnkit-autotune 2\nsignature whatever\nkey\tim2col\n",
    b"not a cache\n" + b"x" * 100000,
])
def test_a_corrupt_cache_file_is_ignored_and_replaced(autotune, content):
    path = cnnkit.autotune.cache_file()
    with open(path, "wb") as f:
        f.write(content)
    assert cnnkit.autotune.entries() == {}
    y = F.conv2d(np.ones((1, 4, 9, 9), np.float32), np.ones((8, 4, 3, 3), np.float32))
    assert np.all(y == 36)
    assert len(cnnkit.autotune.entries()) == 1
    with open(path) as f:
        assert f.read().startswith("cnnkit-autotune 1\nsignature " + _C.autotune_signature() + "\n")


def test_bad_lines_are_skipped_and_stale_choices_measured_again(autotune):
    x, w = np.ones((1, 8, 10, 10), np.float32), np.ones((16, 8, 1, 1), np.float32)
    F.conv2d(x, w)
    (key, impl), = cnnkit.autotune.entries().items()
    cnnkit.autotune.clear(disk=True)
    lines = [f"{key}\tdirect_walk_avx512",  # cannot run a 1x1 layer: measured again
             "no tab on this line", "\tim2col", "key\tNot-A-Name", "k" * 1000 + "\tim2col", "other key\tim2col"]
    with open(cnnkit.autotune.cache_file(), "w") as f:
        f.write(f"cnnkit-autotune 1\nsignature {_C.autotune_signature()}\n" + "\n".join(lines) + "\n")
    assert cnnkit.autotune.entries() == {key: "direct_walk_avx512", "other key": "im2col"}
    np.testing.assert_array_equal(F.conv2d(x, w), np.full((1, 16, 10, 10), 8, np.float32))
    assert cnnkit.autotune.entries()[key] in _C.conv2d_candidates(x.shape, w.shape, (1, 1), (0,) * 4, (1, 1), 1)


@pytest.mark.parametrize("field", ["version", "build", "cpu", "isa"])
def test_a_file_from_another_version_build_or_cpu_is_ignored(autotune, field):
    version, build, cpu, isa = _C.autotune_signature().split(" | ")
    assert build.startswith("build ")
    foreign = {"version": f"{version}.dev9 | {build} | {cpu} | {isa}",
               "build": f"{version} | build 1@2 | {cpu} | {isa}",
               "cpu": f"{version} | {build} | Other CPU | {isa}",
               "isa": f"{version} | {build} | {cpu} | {'avx2' if isa != 'avx2' else 'avx512'}"}[field]
    x, w = np.ones((1, 4, 9, 9), np.float32), np.ones((8, 4, 3, 3), np.float32)
    F.conv2d(x, w)
    (key, impl), = cnnkit.autotune.entries().items()
    cnnkit.autotune.clear(disk=True)
    with open(cnnkit.autotune.cache_file(), "w") as f:
        f.write(f"cnnkit-autotune 1\nsignature {foreign}\n{key}\t{impl}\n")
    assert cnnkit.autotune.entries() == {}
    F.conv2d(x, w)
    with open(cnnkit.autotune.cache_file()) as f:
        assert foreign not in f.read()


def test_an_unwritable_cache_folder_only_loses_the_disk_copy(autotune, monkeypatch, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CNNKIT_CACHE_DIR", str(blocker))
    y = F.conv2d(np.ones((1, 4, 9, 9), np.float32), np.ones((8, 4, 3, 3), np.float32))
    assert np.all(y == 36) and len(cnnkit.autotune.entries()) == 1


def test_info_reports_autotune(autotune):
    info = cnnkit.build_info()["autotune"]
    assert info["enabled"] and info["cache_file"] == cnnkit.autotune.cache_file() and info["entries"] == 0
    out = subprocess.run([sys.executable, "-m", "cnnkit", "info"], capture_output=True, text=True,
                         env=dict(os.environ, CNNKIT_AUTOTUNE="0"), check=True).stdout
    assert "conv autotune: off" in out


def _check_linear(m, fan_in, fan_out, bias, integers, seed, label):
    """Forward, input and weight gradient of one random linear layer against the oracle."""
    rng = np.random.default_rng(seed)
    draw = (lambda s: rng.integers(-3, 4, s).astype(np.float32)) if integers else (
        lambda s: rng.standard_normal(s).astype(np.float32))
    x, w, dy = draw((m, fan_in)), draw((fan_out, fan_in)), draw((m, fan_out))
    b = draw((fan_out,)) if bias else None
    got = [F.linear(x, w, b), *F.linear_backward(dy, x, w, bias_grad=False)[:2]]
    want = [reference.linear(x, w, b), *reference.linear_backward(dy, x, w)[:2]]
    mags = [reference.linear(np.abs(x), np.abs(w), None if b is None else np.abs(b)),
            *reference.linear_backward(np.abs(dy), np.abs(x), np.abs(w))[:2]]
    for g, e, a, k, op in zip(got, want, mags, [fan_in + bias, fan_out, m], ["forward", "input_grad", "weight_grad"]):
        if integers:
            assert_exact(g, e, f"{label} {op}")
        else:
            assert_close(g, e, a, k, f"{label} {op}")


_LINEAR_PATHS = {"small_m_avx512", "blocked_avx512", "small_m_avx2", "blocked_avx2", "blocked_scalar", "transposed"}


@settings(max_examples=25)
@given(m=st.sampled_from([1, 2, 3, 5, 8, 9, 16, 17, 33, 64, 65]), fan_in=st.sampled_from(_AROUND_LANES + [31, 64, 300]),
       fan_out=st.sampled_from(_AROUND_LANES + [33, 130]), bias=st.booleans(), integers=st.booleans(),
       seed=st.integers(0, 2**31))
def test_linear_measured_path_matches_the_oracle(isa, threads, autotune, m, fan_in, fan_out, bias, integers, seed):
    """Each product is run once per timing into the layer's own output, the bias
    preloaded each time: the result must hold it once, whichever path wins."""
    _check_linear(m, fan_in, fan_out, bias, integers, seed, "linear measured")
    keys = [k for k in cnnkit.autotune.entries() if k.startswith("linear ")]
    assert {k.split()[1] for k in keys} <= {"forward", "input_grad", "weight_grad"}
    for key in keys:
        assert cnnkit.autotune.entries()[key] in _LINEAR_PATHS
    if isa == "scalar":
        assert {cnnkit.autotune.entries()[k] for k in keys} <= {"blocked_scalar", "transposed"}


@settings(max_examples=15)
@given(m=st.sampled_from([1, 2, 5, 8, 9, 16, 17, 33]), fan_in=st.sampled_from([1, 7, 16, 17, 100]),
       fan_out=st.sampled_from([9, 16, 17, 40, 130]), bias=st.booleans(), integers=st.booleans(),
       path=st.sampled_from(["transposed", "small_m", "blocked"]), seed=st.integers(0, 2**31))
def test_every_linear_path_matches_the_oracle(isa, threads, autotune, m, fan_in, fan_out, bias, integers, path, seed):
    """Each path forced through the cache file (as a cached winner is taken), every ISA cap."""
    isa_now = cnnkit.build_info()["max_isa"]
    if isa_now == "scalar" and path != "transposed":
        path = "blocked_scalar"
    elif path != "transposed":
        path = f"{path}_{isa_now}"
    products = {"forward": (m, fan_out, fan_in), "input_grad": (m, fan_in, fan_out), "weight_grad": (fan_out, fan_in, m)}
    # The keys end as the dispatcher writes them (ISA cap, threads): read one off a measured call.
    cnnkit.autotune.clear(disk=True)
    F.linear(np.ones((2, 3), np.float32), np.ones((40, 3), np.float32))
    suffix = next(iter(cnnkit.autotune.entries())).split(" isa=")[1]
    cnnkit.autotune.clear(disk=True)
    lines = [f"linear {what} {a} {b} {c} isa={suffix}\t{path}" for what, (a, b, c) in products.items()]
    with open(cnnkit.autotune.cache_file(), "w") as f:
        f.write(f"cnnkit-autotune 1\nsignature {_C.autotune_signature()}\n" + "\n".join(lines) + "\n")
    _check_linear(m, fan_in, fan_out, bias, integers, seed, f"linear {path}")
    # The forced entries were taken, not measured over (transposed only where
    # the product has fewer rows than columns; elsewhere it is no candidate).
    entries = cnnkit.autotune.entries()
    for what, (a, b_, c) in products.items():
        if path != "transposed" or a < b_:
            assert entries[f"linear {what} {a} {b_} {c} isa={suffix}"] == path

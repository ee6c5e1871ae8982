"""Build information, threads and the ISA cap."""

import os
import subprocess
import sys

import pytest

import cnnkit


def test_build_info_reports_compiled_and_selected_kernels():
    info = cnnkit.build_info()
    assert "scalar" in info["compiled_isas"]
    assert info["max_isa"] in ("scalar", "avx2", "avx512")
    assert info["version"] == cnnkit.__version__
    assert info["num_threads"] >= 1


def test_isa_cap_changes_selected_kernel():
    previous = cnnkit.get_max_isa()
    try:
        cnnkit.set_max_isa("scalar")
        assert cnnkit.build_info()["sgemm"] == "blocked_scalar"
    finally:
        cnnkit.set_max_isa(previous)


def test_bad_isa_and_thread_count_are_rejected():
    with pytest.raises(ValueError, match="ISA"):
        cnnkit.set_max_isa("sse9")
    with pytest.raises(ValueError, match="num_threads"):
        cnnkit.set_num_threads(0)
    with pytest.raises(TypeError):
        cnnkit.set_num_threads(1.5)


def test_isa_environment_variable_caps_and_a_typo_warns():
    code = "import cnnkit; print(cnnkit.build_info()['max_isa'], cnnkit.build_info()['kernels']['sgemm'])"
    env = dict(os.environ, CNNKIT_MAX_ISA="scalar")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["scalar", "blocked_scalar"]
    env["CNNKIT_MAX_ISA"] = "avx9000"
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[0] == "scalar" and "CNNKIT_MAX_ISA='avx9000'" in out.stderr


def test_build_info_names_a_kernel_for_every_family():
    kernels = cnnkit.build_info()["kernels"]
    assert {"sgemm", "pool2d", "batch_norm", "activation tanh", "softmax"} <= set(kernels)
    assert all(isinstance(v, str) and v for v in kernels.values())

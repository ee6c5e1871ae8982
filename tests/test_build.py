"""Build information, threads and the ISA cap."""

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

import atexit
import os
import shutil
import tempfile

# Kernel choices must not depend on timings in tests (nor should the tests
# write the user's cache): the measured choice stays off unless a test turns
# it on (the `autotune` fixture), and any cache goes to a private folder.
# Set before cnnkit loads, and inherited by the processes tests start.
os.environ["CNNKIT_AUTOTUNE"] = "0"
os.environ["CNNKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="cnnkit-test-cache-")
atexit.register(shutil.rmtree, os.environ["CNNKIT_CACHE_DIR"], ignore_errors=True)

import pytest
from hypothesis import HealthCheck, settings

import cnnkit
from devices import Device, device_params
from tolerance import worst_ratio

# The isa and threads fixtures set process-wide state meant to hold for every
# generated example, so the function-scoped-fixture health check does not apply.
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("default", max_examples=40, **_COMMON)
settings.register_profile("thorough", max_examples=300, **_COMMON)
# CI draws the same examples every run (a submission must not pass or fail by
# chance); local runs keep exploring new ones.
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)
# Under AddressSanitizer + UBSan (.ci/sanitize) every call runs several times slower.
settings.register_profile("sanitize", max_examples=5, derandomize=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))

_ORDER = ["scalar", "avx2", "avx512"]


def supported_isas():
    """Every ISA this build compiled and this CPU runs, narrowest first."""
    info = cnnkit.build_info()
    top = _ORDER.index(info["detected_isa"])
    return [isa for isa in _ORDER[: top + 1] if isa in info["compiled_isas"]]


@pytest.fixture(params=supported_isas())
def isa(request):
    """Run the test once per ISA cap, restoring the previous cap afterwards."""
    previous = cnnkit.get_max_isa()
    cnnkit.set_max_isa(request.param)
    yield request.param
    cnnkit.set_max_isa(previous)


@pytest.fixture(params=[1, 2])
def threads(request):
    """Run the test serially and threaded."""
    previous = cnnkit.get_num_threads()
    cnnkit.set_num_threads(request.param)
    yield request.param
    cnnkit.set_num_threads(previous)


@pytest.fixture(params=device_params())
def device(request):
    """Run the test on the CPU and, where cnnkit can use one, on a CUDA GPU (tests/devices.py),
    with every output the GPU ops allocate poisoned with NaN."""
    if request.param == "cpu":
        yield Device("cpu")
        return
    if "isa" in request.fixturenames and request.getfixturevalue("isa") != supported_isas()[-1]:
        pytest.skip("the CPU's ISA cap does not change a CUDA run: it runs once, under the widest")
    from cnnkit.cuda import _device

    _device.poison_outputs(True)
    try:
        yield Device("cuda")
    finally:
        _device.poison_outputs(False)


@pytest.fixture
def autotune(tmp_path, monkeypatch):
    """Measured conv choice on, with an empty cache in a folder of its own; off again afterwards."""
    monkeypatch.setenv("CNNKIT_CACHE_DIR", str(tmp_path))
    cnnkit.autotune.clear(disk=True)
    cnnkit.autotune.set_enabled(True)
    yield tmp_path
    cnnkit.autotune.set_enabled(False)
    cnnkit.autotune.clear(disk=True)


def pytest_sessionfinish(session):
    # Under pytest-xdist (-n) each worker measures its own tests: it hands its ratios to the
    # controller, which prints the table.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["worst_ratio"] = dict(worst_ratio)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for op, ratio in getattr(node, "workeroutput", {}).get("worst_ratio", {}).items():
        worst_ratio[op] = max(ratio, worst_ratio.get(op, 0.0))


def pytest_terminal_summary(terminalreporter):
    if worst_ratio:
        terminalreporter.section("worst error ratio |err| / (sqrt(K) u A) per op (bound: 8)")
        for op in sorted(worst_ratio):
            terminalreporter.write_line(f"{op:32s} {worst_ratio[op]:.3f}")

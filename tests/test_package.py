"""What a user meets before any op runs: licence, version, the command's --version, imports."""

import os
import re
import site
import subprocess
import sys

import pytest

import cnnkit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def test_licence_file_is_mit_as_the_metadata_says():
    licence = _read("LICENSE")
    assert licence.startswith("MIT License") and "cnnkit developers" in licence
    assert 'license = { text = "MIT" }' in _read("pyproject.toml")


def test_the_version_is_written_once():
    pyproject = _read("pyproject.toml")
    assert 'dynamic = ["version"]' in pyproject
    assert not re.search(r"(?m)^version\s*=", pyproject)
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", cnnkit.__version__)


def test_build_backend_reads_the_version_from_the_package(tmp_path):
    build = pytest.importorskip("scikit_build_core.build")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        dist_info = build.prepare_metadata_for_build_wheel(str(tmp_path))
    finally:
        os.chdir(cwd)
    metadata = (tmp_path / dist_info / "METADATA").read_text()
    assert f"\nVersion: {cnnkit.__version__}\n" in metadata
    assert "Requires-Dist: mlxtend" not in metadata and "Provides-Extra: data" in metadata
    # The README's `cnnkit train` is a console script of the installed package.
    assert "cnnkit = cnnkit.cli:main" in (tmp_path / dist_info / "entry_points.txt").read_text()
    assert (tmp_path / dist_info / "licenses" / "LICENSE").exists()


@pytest.mark.parametrize("command", [["-m", "cnnkit", "--version"], ["-c", "from cnnkit.cli import main; main()", "--version"]])
def test_version_flag(command):
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"cnnkit {cnnkit.__version__}"


def test_import_from_inside_the_package_folder_keeps_the_standard_library():
    """With the package folder as the working directory its modules come first on sys.path:
    a module named like a standard-library one that is not loaded at start-up (random.py was)
    would replace it, and ``import cnnkit`` recursed."""
    package = os.path.dirname(cnnkit.__file__)
    stdlib = sorted({os.path.splitext(n)[0] for n in os.listdir(package)} & set(sys.stdlib_module_names) | {"random"})
    # -S: no site module, whose .pth files may import random before the working directory counts.
    path = [os.path.dirname(package), *site.getsitepackages(), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    script = f"import importlib, cnnkit\nfor n in {stdlib!r}: print(getattr(importlib.import_module(n), '__file__', None))"
    result = subprocess.run([sys.executable, "-S", "-c", script], cwd=package, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    origins = result.stdout.split()
    assert len(origins) == len(stdlib)
    assert not [o for o in origins if o != "None" and os.path.dirname(os.path.abspath(o)) == package], origins


def test_documents_that_readme_and_tests_cite_exist():
    cited = set()
    sources = ["README.md"] + [os.path.join("tests", n) for n in os.listdir(os.path.join(ROOT, "tests")) if n.endswith(".py")]
    for name in sources:
        cited |= set(re.findall(r"\bdocs/[\w./-]+\.md\b", _read(name)))
    assert "docs/RELIABILITY.md" in cited
    for path in cited:
        assert os.path.isfile(os.path.join(ROOT, path)), path
    contract = _read("docs/RELIABILITY.md")
    for topic in ("tolerance rule", "dtype policy", "TypeError", "IndexError", "OverflowError", "NaN"):
        assert topic in contract, topic


def test_the_torch_adapter_without_torch_says_what_to_install():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import cnnkit.torch\nexcept ModuleNotFoundError as e:\n    print(e.name, '|', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("torch |") and "cnnkit.torch needs PyTorch: pip install torch" in out

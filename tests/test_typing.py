"""Typing: the package ships py.typed and a stub of _C that matches the bindings; public modules list __all__."""

import ast
import importlib
import inspect
import os

import pytest

import cnnkit
from cnnkit import _C

PACKAGE = os.path.dirname(cnnkit.__file__)


def test_the_package_is_marked_typed():
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))


def _parameters(node):
    args = node.args.args
    defaults = [None] * (len(args) - len(node.args.defaults)) + [ast.literal_eval(d) for d in node.args.defaults]
    return [(a.arg, d) for a, d in zip(args, defaults)]


def stub_functions(body=None):
    """name -> parameters of each function in the stub (or in a class's ``body``); a class maps
    to the dict of its methods."""
    if body is None:
        with open(os.path.join(PACKAGE, "_C.pyi")) as f:
            body = ast.parse(f.read()).body
    stubs = {}
    for node in body:
        if isinstance(node, ast.FunctionDef):
            stubs[node.name] = _parameters(node)
        elif isinstance(node, ast.ClassDef):
            stubs[node.name] = stub_functions(node.body)
    return stubs


def split_top_level(text):
    """Split ``text`` at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def runtime_parameters(function):
    """(name, default) pairs from the signature pybind11 writes on the docstring's first line."""
    first = function.__doc__.strip().splitlines()[0]
    inside = first[first.index("(") + 1 : first.rindex(") ->")]
    params = []
    for part in split_top_level(inside):
        name, _, rest = part.partition(":")
        _, has_default, default = rest.rpartition(" = ")
        params.append((name.strip(), ast.literal_eval(default) if has_default else None))
    return params


def test_the_stub_of_C_lists_every_binding_with_its_parameters():
    stubs = stub_functions()
    runtime = {n: getattr(_C, n) for n in dir(_C) if not n.startswith("_") and callable(getattr(_C, n))}
    assert sorted(stubs) == sorted(runtime), "the stub and the compiled module define different functions"
    for name, function in runtime.items():
        if isinstance(function, type):
            check_class_stub(stubs[name], function)
        else:
            assert stubs[name] == runtime_parameters(function), name


def check_class_stub(stub, cls):
    """Every public method (and __init__) of a bound class has a stub with its parameters (self
    first); properties have a stub too."""
    names = [n for n in vars(cls) if not n.startswith("_") or n == "__init__"]
    assert sorted(stub) == sorted(names), cls.__name__
    for n in names:
        member = getattr(cls, n)
        if not isinstance(member, property):
            assert stub[n] == runtime_parameters(member), f"{cls.__name__}.{n}"


MODULES = ["cnnkit", "cnnkit.io", "cnnkit.data", "cnnkit.models", "cnnkit.train", "cnnkit.viz",
           "cnnkit.reference", "cnnkit.bench", "cnnkit.cli", "cnnkit._rng",
           "cnnkit.checkpoint", "cnnkit.keras", "cnnkit.distributed", "cnnkit.torch", "cnnkit.optim", "cnnkit.optim.optimizer",
           "cnnkit.optim.lr_scheduler", "cnnkit.plan"]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_cover_the_public_functions_and_classes(name):
    if name == "cnnkit.torch":
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported), "duplicates in __all__"
    assert all(not n.startswith("_") and hasattr(module, n) for n in exported)
    if name == "cnnkit.cli":
        return  # its cmd_* functions are argparse handlers, not API
    defined = {
        n for n, obj in vars(module).items()
        if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == name
    }
    assert defined <= set(exported), f"public but not in {name}.__all__: {sorted(defined - set(exported))}"

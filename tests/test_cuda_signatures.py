"""The CUDA op modules (cnnkit.cuda.ops_*) mirror cnnkit.functional: every public function has the
name and the exact signature of its functional twin, so the device dispatch can route a call
unchanged; each module's __all__ lists exactly its public functions."""

import importlib
import inspect

import pytest

import cnnkit.functional as F
from cuda_support import built

TWINNED = ["act", "loss", "pool", "norm", "dropout"]


def public_functions(module):
    return {n for n, obj in vars(module).items()
            if not n.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__}


@built
@pytest.mark.parametrize("family", TWINNED + ["optim"])
def test_all_lists_the_public_functions(family):
    module = importlib.import_module(f"cnnkit.cuda.ops_{family}")
    assert sorted(module.__all__) == sorted(public_functions(module))


@built
@pytest.mark.parametrize("family", TWINNED)
def test_every_op_has_its_functional_twins_signature(family):
    module = importlib.import_module(f"cnnkit.cuda.ops_{family}")
    for name in module.__all__:
        assert name in F.__all__, f"ops_{family}.{name} has no twin in cnnkit.functional"
        assert inspect.signature(getattr(module, name)) == inspect.signature(getattr(F, name)), name


@built
def test_every_activation_normalisation_pooling_loss_and_dropout_op_is_on_the_gpu():
    """The functional ops of this branch's families, forward and backward, all have a CUDA twin."""
    covered = set().union(*(importlib.import_module(f"cnnkit.cuda.ops_{f}").__all__ for f in TWINNED))
    wanted = {n for n in F.__all__ if n.removesuffix("_backward") in {
        "relu", "leaky_relu", "elu", "relu6", "hardtanh", "sigmoid", "tanh", "softplus", "prelu", "gelu", "silu",
        "softmax", "log_softmax", "cross_entropy", "nll_loss", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
        "batch_norm", "local_response_norm", "dropout", "dropout2d"}}
    assert wanted <= covered, sorted(wanted - covered)

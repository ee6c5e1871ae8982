"""nn.init: the distributions' moments against the formulas (PyTorch's documentation), over many draws.

Each check allows 6 standard errors of the sample statistic, so with 204,800 draws a
standard deviation off by a few percent fails, and a seeded generator keeps every run the same.
"""

import math

import numpy as np
import pytest

import cnnkit
from cnnkit import nn

# A conv weight: fan_in = 32 * 10 * 10 = 3200, fan_out = 64 * 10 * 10 = 6400.
SHAPE = (64, 32, 10, 10)
FAN_IN, FAN_OUT = 3200, 6400
N = 64 * 32 * 10 * 10


def draws(fill, *args, **kwargs):
    w = nn.Parameter(np.zeros(SHAPE, np.float32))
    assert fill(w, *args, generator=np.random.default_rng(7), **kwargs) is w
    assert w.data.dtype == np.float32 and w.data.shape == SHAPE
    return w.data.astype(np.float64).ravel()


def check_normal(values, mean, std):
    assert abs(values.mean() - mean) <= 6 * std / math.sqrt(N)
    # The sample standard deviation of N normal draws has a standard error of std / sqrt(2N).
    assert abs(values.std() - std) <= 6 * std / math.sqrt(2 * N)
    # Normal, not uniform with the same moments: a third of the mass lies beyond one std.
    assert abs(np.mean(np.abs(values - mean) > std) - 0.3173) < 0.01


def check_uniform(values, low, high):
    assert values.min() >= low and values.max() <= high
    width = high - low
    assert values.min() < low + width * 1e-3 and values.max() > high - width * 1e-3
    assert abs(values.mean() - (low + high) / 2) <= 6 * width / math.sqrt(12 * N)
    # Var of the sample variance for a uniform: (mu4 - sigma^4) / N = width^4 (1/80 - 1/144) / N.
    assert abs(values.var() - width**2 / 12) <= 6 * width**2 * math.sqrt((1 / 80 - 1 / 144) / N)


@pytest.mark.parametrize("low,high", [(0.0, 1.0), (-3.0, 0.5)])
def test_uniform(low, high):
    check_uniform(draws(nn.init.uniform_, low, high), low, high)


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (2.5, 0.01)])
def test_normal(mean, std):
    check_normal(draws(nn.init.normal_, mean, std), mean, std)


def test_defaults_are_pytorchs():
    check_uniform(draws(nn.init.uniform_), 0.0, 1.0)
    check_normal(draws(nn.init.normal_), 0.0, 1.0)


@pytest.mark.parametrize(
    "fill,expected",
    [
        (lambda w: nn.init.constant_(w, -2.5), -2.5),
        (nn.init.ones_, 1.0),
        (nn.init.zeros_, 0.0),
    ],
    ids=["constant_", "ones_", "zeros_"],
)
def test_constant_fills(fill, expected):
    for target in (nn.Parameter(np.full((3, 4), 7, np.float32)), np.full((2, 5), 7, np.float32)):
        assert fill(target) is target
        array = target.data if isinstance(target, nn.Parameter) else target
        assert array.dtype == np.float32 and (array == expected).all()


GAINS = {
    ("linear", None): 1.0,
    ("conv2d", None): 1.0,
    ("sigmoid", None): 1.0,
    ("tanh", None): 5 / 3,
    ("relu", None): math.sqrt(2),
    ("leaky_relu", None): math.sqrt(2 / (1 + 0.01**2)),
    ("leaky_relu", 0.2): math.sqrt(2 / (1 + 0.2**2)),
    ("selu", None): 0.75,
}


@pytest.mark.parametrize("nonlinearity,param", list(GAINS))
def test_calculate_gain(nonlinearity, param):
    assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(GAINS[nonlinearity, param], rel=1e-12)


@pytest.mark.parametrize("nonlinearity,param", list(GAINS))
def test_calculate_gain_matches_torch(nonlinearity, param):
    torch = pytest.importorskip("torch")
    expected = torch.nn.init.calculate_gain(nonlinearity, param)
    assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-12)


def test_calculate_gain_rejects_unknown_nonlinearities():
    with pytest.raises(ValueError, match="swish"):
        nn.init.calculate_gain("swish")


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_xavier_uniform(gain):
    bound = gain * math.sqrt(6 / (FAN_IN + FAN_OUT))
    check_uniform(draws(nn.init.xavier_uniform_, gain=gain), -bound, bound)


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_xavier_normal(gain):
    check_normal(draws(nn.init.xavier_normal_, gain=gain), 0.0, gain * math.sqrt(2 / (FAN_IN + FAN_OUT)))


KAIMING = [
    (0.0, "fan_in", "leaky_relu", FAN_IN, math.sqrt(2)),
    (0.2, "fan_out", "leaky_relu", FAN_OUT, math.sqrt(2 / 1.04)),
    (0.0, "fan_in", "relu", FAN_IN, math.sqrt(2)),
    (0.0, "fan_out", "tanh", FAN_OUT, 5 / 3),
]


@pytest.mark.parametrize("a,mode,nonlinearity,fan,gain", KAIMING)
def test_kaiming_uniform(a, mode, nonlinearity, fan, gain):
    bound = gain * math.sqrt(3 / fan)
    check_uniform(draws(nn.init.kaiming_uniform_, a=a, mode=mode, nonlinearity=nonlinearity), -bound, bound)


@pytest.mark.parametrize("a,mode,nonlinearity,fan,gain", KAIMING)
def test_kaiming_normal(a, mode, nonlinearity, fan, gain):
    values = draws(nn.init.kaiming_normal_, a=a, mode=mode, nonlinearity=nonlinearity)
    check_normal(values, 0.0, gain / math.sqrt(fan))


def test_linear_weight_fans():
    """A 2-D (out, in) weight has fan_in = in and fan_out = out."""
    w = np.zeros((400, 600), np.float32)
    nn.init.xavier_normal_(w, generator=np.random.default_rng(3))
    std = math.sqrt(2 / 1000)
    assert abs(w.std() - std) <= 6 * std / math.sqrt(2 * w.size)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=np.random.default_rng(3))
    std = math.sqrt(2 / 400)
    assert abs(w.std() - std) <= 6 * std / math.sqrt(2 * w.size)


def test_the_default_generator_follows_manual_seed():
    a, b = np.zeros((50, 40), np.float32), np.zeros((50, 40), np.float32)
    cnnkit.manual_seed(11)
    nn.init.xavier_normal_(a)
    cnnkit.manual_seed(11)
    nn.init.xavier_normal_(b)
    np.testing.assert_array_equal(a, b)
    assert a.std() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_normal_(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="mode"):
        nn.init.kaiming_normal_(np.zeros((3, 3), np.float32), mode="fan_avg")

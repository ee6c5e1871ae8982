"""safetensors files: round trips, the byte layout, atomic saves, corrupt and truncated files."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

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


def test_round_trip_keeps_names_dtypes_shapes_values_and_order(tmp_path):
    state = sample_state()
    path = tmp_path / "model.safetensors"
    io.save_state_dict(state, path)
    back = io.load_state_dict_file(path)
    assert list(back) == list(state)
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
    io.save_state_dict({"b": np.array([1.0, 2.0], np.float32), "a": np.array([[3]], np.int64)}, path, {"epoch": "3"})
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    assert size % 8 == 0  # data starts 8-byte aligned
    header = json.loads(raw[8 : 8 + size])
    assert header == {
        "__metadata__": {"epoch": "3"},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "a": {"dtype": "I64", "shape": [1, 1], "data_offsets": [8, 16]},
    }
    data = raw[8 + size :]
    assert data == np.array([1.0, 2.0], "<f4").tobytes() + np.array([3], "<i8").tobytes()
    _, metadata = io.load_state_dict_file(path, with_metadata=True)
    assert metadata == {"epoch": "3"}
    assert io.load_state_dict_file(tmp_path / "w.safetensors", with_metadata=True)[1] == {"epoch": "3"}


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
    st = pytest.importorskip("safetensors.numpy")
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


CORRUPT = {
    "empty file": (b"", "truncated safetensors file"),
    "header size past the end": (b"\xff" * 8 + b"{}", "runs past the end"),
    "not json": (with_header(b"{nope"), "corrupt safetensors header"),
    "not utf-8": (with_header(b'{"\xff": 1}'), "corrupt safetensors header"),
    "json list": (with_header([1, 2]), "JSON object"),
    "duplicate names": (with_header(b'{"a": {}, "a": {}}'), "duplicate"),
    "unknown dtype": (with_header({"a": entry("Q7")}, bytes(16)), "unsupported dtype 'Q7'"),
    "float8": (with_header({"a": entry("F8_E4M3", (4,), (0, 4))}, bytes(4)), "unsupported dtype"),
    "missing field": (with_header({"a": {"dtype": "F32", "shape": [1]}}, bytes(4)), "needs exactly"),
    "negative dim": (with_header({"a": entry(shape=(-2, -2))}, bytes(16)), "invalid shape"),
    "bool dim": (with_header({"a": entry(shape=(True,), offsets=(0, 4))}, bytes(4)), "invalid shape"),
    "float dim": (with_header(b'{"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}', bytes(4)), "shape"),
    "reversed offsets": (with_header({"a": entry(offsets=(16, 0))}, bytes(16)), "invalid data_offsets"),
    "size mismatch": (with_header({"a": entry(offsets=(0, 12))}, bytes(12)), "needs 16"),
    "overlap": (with_header({"a": entry(), "b": entry(offsets=(8, 24))}, bytes(24)), "overlaps"),
    "gap": (with_header({"a": entry(offsets=(4, 20))}, bytes(20)), "gap"),
    "trailing bytes": (with_header({"a": entry()}, bytes(17)), "the file holds 17"),
    "bad bool": (with_header({"m": entry("BOOL", (2,), (0, 2))}, b"\x01\x02"), "other than 0 and 1"),
    "bad metadata": (with_header({"__metadata__": {"k": 1}}, b""), "__metadata__"),
}


@pytest.mark.parametrize("case", list(CORRUPT), ids=list(CORRUPT))
def test_corrupt_files_raise_value_error_naming_the_file(tmp_path, case):
    raw, message = CORRUPT[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
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

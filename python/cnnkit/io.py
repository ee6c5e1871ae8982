"""Weight files in the safetensors format, written atomically.

A safetensors file (https://github.com/huggingface/safetensors) is an 8-byte
little-endian header size N, N bytes of JSON, then the raw little-endian data.
The JSON maps each tensor name to ``{"dtype": "F32", "shape": [...],
"data_offsets": [begin, end]}`` (offsets into the data, which the tensors tile
without gaps) and may hold ``"__metadata__"``, a dict of strings. Files written
here open with the ``safetensors`` package and with PyTorch's tooling, and files
written there open here.

Saving writes a temporary file next to the target, fsyncs it and renames it
over the target, so a crash or error leaves the previous file intact. Loading
checks the whole header against the file before building any array, and
raises ValueError naming the file when it is truncated or corrupt.
"""

import json
import math
import os
import secrets
from collections.abc import Mapping

import numpy as np

_DTYPES = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_BF16_SIZE = 2


# ----------------------------------------------------------------------------
# saving
# ----------------------------------------------------------------------------


def save_state_dict(state_dict, path, metadata=None):
    """Write ``state_dict`` (a mapping name -> array) to ``path`` as safetensors.

    Arrays may be bool, integer or float (16/32/64-bit); they are stored in
    little-endian C order. ``metadata`` is an optional dict of strings stored in
    the header. The write is atomic: on any error the old file is untouched.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
    header = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise TypeError("metadata must be a dict of str to str")
        header["__metadata__"] = dict(metadata)
    arrays = []
    offset = 0
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"state_dict keys must be str, got {type(name).__name__}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved by the safetensors format; pass metadata=")
        array = np.asarray(value)
        stored = array.dtype.newbyteorder("<") if array.dtype.byteorder in "<>=" else array.dtype
        if stored not in _NAMES:
            raise TypeError(
                f"state_dict[{name!r}] has dtype {array.dtype}; safetensors stores bool, integer and float arrays"
            )
        nbytes = array.size * stored.itemsize
        header[name] = {"dtype": _NAMES[stored], "shape": list(array.shape), "data_offsets": [offset, offset + nbytes]}
        arrays.append((array, stored))
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Padding the header with spaces (allowed by the format) to a multiple of 8
    # keeps every tensor 8-byte aligned for readers that map the file.
    encoded += b" " * (-len(encoded) % 8)

    def chunks():
        yield len(encoded).to_bytes(8, "little")
        yield encoded
        for array, stored in arrays:
            yield np.ascontiguousarray(array, dtype=stored).reshape(-1).view(np.uint8).data

    _atomic_write(path, chunks())


def _atomic_write(path, chunks):
    """Write ``chunks`` to a temporary file beside ``path``, fsync, then rename it over ``path``."""
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    temp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(6)}.tmp")
    # O_EXCL never reuses another writer's temp file; mode 0o666 lets the umask decide,
    # as for any new file.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.remove(temp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename itself durable; platforms that cannot open directories skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------


def _reject_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _exact_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_entry(key, info, name):
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"{name}: tensor {key!r} needs exactly dtype, shape and data_offsets, got {info!r}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype != "BF16" and dtype not in _DTYPES:
        raise ValueError(f"{name}: tensor {key!r} has unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_exact_int(d) and d >= 0 for d in shape):
        raise ValueError(f"{name}: tensor {key!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_exact_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise ValueError(f"{name}: tensor {key!r} has invalid data_offsets {offsets!r}")
    itemsize = _BF16_SIZE if dtype == "BF16" else _DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
        raise ValueError(
            f"{name}: tensor {key!r} of shape {shape} and dtype {dtype} spans "
            f"{offsets[1] - offsets[0]} bytes, it needs {math.prod(shape) * itemsize}"
        )
    return offsets[0], offsets[1], key, dtype, tuple(shape)


def _parse(raw, name):
    """``(state_dict, metadata)`` from a file's bytes, or ValueError; nothing is built before all checks pass."""
    if len(raw) < 8:
        raise ValueError(f"{name}: truncated safetensors file ({len(raw)} bytes; the header size alone needs 8)")
    size = int.from_bytes(raw[:8], "little")
    if size > len(raw) - 8:
        raise ValueError(f"{name}: header size {size} runs past the end of the {len(raw)}-byte file (truncated?)")
    try:
        header = json.loads(raw[8 : 8 + size].decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{name}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{name}: the safetensors header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise ValueError(f"{name}: __metadata__ must map strings to strings")
    entries = sorted(_parse_entry(key, info, name) for key, info in header.items())
    data = memoryview(raw)[8 + size :]
    position = 0
    for begin, end, key, _, _ in entries:
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else "leaves a gap before it"
            raise ValueError(f"{name}: tensor {key!r} starts at byte {begin}, which {problem} (expected {position})")
        position = end
    if position != len(data):
        raise ValueError(
            f"{name}: the header describes {position} bytes of data, the file holds {len(data)} (truncated or padded?)"
        )
    for begin, end, key, dtype, _ in entries:
        if dtype == "BOOL" and np.frombuffer(data[begin:end], np.uint8).max(initial=0) > 1:
            raise ValueError(f"{name}: bool tensor {key!r} holds bytes other than 0 and 1")
    state = {}
    for begin, end, key, dtype, shape in entries:
        if dtype == "BF16":
            # bfloat16 is the top half of a float32: widen it exactly.
            bits = np.frombuffer(data[begin:end], "<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(data[begin:end], _DTYPES[dtype]).astype(_DTYPES[dtype].newbyteorder("="))
        state[key] = array.reshape(shape)
    return state, metadata


def load_state_dict_file(path, with_metadata=False):
    """Read a safetensors file into a dict name -> ndarray (in the file's data order).

    Arrays are fresh, writeable, native-endian copies. ``BF16`` tensors are
    widened to float32 (NumPy has no bfloat16); 8-bit float types raise
    ValueError. With ``with_metadata`` returns ``(state_dict, metadata)``, the
    metadata being the header's ``__metadata__`` dict or None.
    """
    name = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    state, metadata = _parse(raw, name)
    return (state, metadata) if with_metadata else state


# ----------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------


def save(model, path, metadata=None):
    """Save ``model.state_dict()`` to ``path`` (safetensors, atomic)."""
    save_state_dict(model.state_dict(), path, metadata=metadata)


def load(path, model=None):
    """Read the state dict saved at ``path``; with a ``model``, also load it into the model."""
    state = load_state_dict_file(path)
    if model is not None:
        model.load_state_dict(state)
    return state

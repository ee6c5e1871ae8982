"""Weight files in the safetensors format, through the ``safetensors`` package.

The package (https://github.com/huggingface/safetensors) reads and writes the
format: an 8-byte header size, a JSON header of names, dtypes, shapes and data
offsets, then the raw little-endian data. It rejects headers over 100 MB, JSON
nested deeper than 128 levels, offsets that overlap, leave gaps or run past the
data, and shapes whose byte size overflows. cnnkit adds what it does not do:

- saving writes a recognisable temporary file next to the target
  (``.<name>.cnnkit-tmp-<pid>-<random>``), fsyncs it and renames it over the
  target, so a crash leaves the previous file intact; the next save of the same
  target removes temporaries whose writing process is gone;
- loading reads the file once, refuses headers over 16 MiB or describing over
  100,000 tensors before the package parses them (its own bound takes
  seconds and gigabytes to reach), refuses what NumPy could not build (more than
  32 dimensions, empty tensors with absurd other dimensions, bool bytes other
  than 0 and 1, 8-bit floats), widens bfloat16 to float32, and raises
  ValueError naming the file for anything corrupt;
- loading into a model refuses a cast that would change a value (1e300 into
  float32, 2.5 into an integer buffer), naming the file and the tensor, before
  the model is touched.
"""

import json
import os
import re
import secrets
import sys
from collections.abc import Mapping

import numpy as np
import safetensors
import safetensors.numpy

__all__ = ["save", "load", "save_state_dict", "load_state_dict_file"]

# The format's dtype names NumPy can hold (the stored data is little-endian); BF16 is widened apart.
_DTYPES = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "F16": "<f2",
    "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8", "C64": "<c8",
}
_STORABLE = frozenset(np.dtype(code) for code in _DTYPES.values() if code != "<c8")
# The package accepts headers up to 100 MB, which can describe 2 million tensors and take
# half a minute and gigabytes to parse; a CNN has hundreds.
_MAX_HEADER = 16 << 20
_MAX_TENSORS = 100_000
# NumPy 1.x allows 32 dimensions (2.x allows 64): the smaller keeps files portable.
_MAX_NDIM = 32
_TEMP_MARK = ".cnnkit-tmp-"


# ----------------------------------------------------------------------------
# saving
# ----------------------------------------------------------------------------


def _stored(name, value):
    """``value`` as the C-contiguous little-endian array the package writes (it reads raw memory)."""
    array = np.asarray(value)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder in "<>=" else array.dtype
    if dtype not in _STORABLE:
        raise TypeError(
            f"state_dict[{name!r}] has dtype {array.dtype}; safetensors stores bool, integer and float arrays"
        )
    return np.asarray(array, dtype=dtype, order="C")


def save_state_dict(state_dict, path, metadata=None):
    """Write ``state_dict`` (a mapping name -> array) to ``path`` as safetensors.

    Arrays may be bool, integer or float (16/32/64-bit). ``metadata`` is an
    optional dict of strings stored in the header. The write is atomic: on any
    error the old file is untouched.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
    if metadata is not None and (
        not isinstance(metadata, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise TypeError("metadata must be a dict of str to str")
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"state_dict keys must be str, got {type(name).__name__}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved by the safetensors format; pass metadata=")
        arrays[name] = _stored(name, value)
    encoded = safetensors.numpy.save(arrays, metadata=None if metadata is None else dict(metadata))
    _atomic_write(path, encoded)


def _temp_owner(entry, prefix):
    """The pid that wrote temporary file ``entry`` of the target named by ``prefix``, or None if it is not one."""
    match = re.fullmatch(r"(\d+)-[0-9a-f]{12}", entry[len(prefix) :]) if entry.startswith(prefix) else None
    return int(match[1]) if match else None


def _process_gone(pid):
    """Whether the writer ``pid`` has exited, so that its temporary file is stale."""
    if os.name != "posix":
        # Windows refuses to remove a file another process holds open, which protects live writers.
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _remove_stale_temps(directory, prefix):
    """Remove temporaries of this target left by writers killed mid-save."""
    for entry in os.listdir(directory):
        pid = _temp_owner(entry, prefix)
        if pid is not None and _process_gone(pid):
            try:
                os.remove(os.path.join(directory, entry))
            except OSError:
                pass


def _atomic_write(path, data):
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename it over ``path``."""
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    prefix = f".{os.path.basename(target)}{_TEMP_MARK}"
    _remove_stale_temps(directory, prefix)
    # The pid in the name lets a later save tell a dead writer's leftover from a live writer's file.
    temp = os.path.join(directory, f"{prefix}{os.getpid()}-{secrets.token_hex(6)}")
    # O_EXCL never reuses another writer's temp file; mode 0o666 lets the umask decide,
    # as for any new file.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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


def _array(key, dtype, shape, data, name):
    """One tensor from the bytes the package validated, after the checks NumPy needs."""
    if len(shape) > _MAX_NDIM:
        raise ValueError(f"{name}: tensor {key!r} has {len(shape)} dimensions; at most {_MAX_NDIM} are supported")
    if dtype == "BF16":
        # bfloat16 is the top half of a float32: widen it exactly.
        array = (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32)
    elif dtype in _DTYPES:
        array = np.frombuffer(data, _DTYPES[dtype])
    else:
        raise ValueError(f"{name}: tensor {key!r} has dtype {dtype}, which NumPy cannot represent")
    # The package bounds non-empty shapes by the file's size; an empty one can still claim
    # dimensions no array could have.
    extent = array.itemsize
    for d in shape:
        extent *= max(d, 1)
    if extent > sys.maxsize:
        raise ValueError(f"{name}: tensor {key!r} has an absurd shape {shape}")
    if dtype == "BOOL" and np.frombuffer(data, np.uint8).max(initial=0) > 1:
        raise ValueError(f"{name}: bool tensor {key!r} holds bytes other than 0 and 1")
    return array.astype(array.dtype.newbyteorder("="), copy=False).reshape(shape)


def load_state_dict_file(path, with_metadata=False):
    """Read a safetensors file into a dict name -> ndarray (in name order).

    Arrays are writeable native-endian arrays. ``BF16`` tensors are widened to
    float32 (NumPy has no bfloat16); 8-bit float types raise ValueError. With
    ``with_metadata`` returns ``(state_dict, metadata)``, the metadata being the
    header's ``__metadata__`` dict or None. A corrupt file raises ValueError
    naming it.
    """
    name = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    header = raw[8 : 8 + int.from_bytes(raw[:8], "little")]
    if len(header) > _MAX_HEADER:
        raise ValueError(f"{name}: a header of {len(header)} bytes is over cnnkit's limit of {_MAX_HEADER}")
    # Every tensor's entry is a JSON object, and an object's brace cannot be escaped: the
    # count of braces bounds the count of tensors before anything is parsed.
    if header.count(b"{") - 1 > _MAX_TENSORS:
        raise ValueError(f"{name}: the header describes more than cnnkit's limit of {_MAX_TENSORS} tensors")
    try:
        tensors = safetensors.deserialize(raw)
    except safetensors.SafetensorError as e:
        raise ValueError(f"{name}: corrupt safetensors file ({e})") from None
    del raw
    state = {key: _array(key, info["dtype"], info["shape"], info["data"], name) for key, info in sorted(tensors)}
    if not with_metadata:
        return state
    # The package's byte API leaves out the metadata; the header it has just accepted is
    # JSON nested at most 128 deep.
    return state, json.loads(header).get("__metadata__")


def _cast_problem(value, dtype):
    """Why copying ``value`` into an array of ``dtype`` would change a value, or None.

    Rounding into a narrower float is what loading float64 weights into a
    float32 model means, so it passes; overflow to inf does not. Integer and
    bool targets must hold every value exactly.
    """
    if value.dtype == dtype:
        return None
    if value.dtype.kind == "c" and dtype.kind != "c":
        return f"complex values cannot go into a {dtype} buffer"
    with np.errstate(all="ignore"):
        cast = value.astype(dtype)
        if dtype.kind in "fc":
            bad = np.isfinite(value) & ~np.isfinite(cast)
            reason = f"overflows {dtype}"
        else:
            bad = (cast.astype(value.dtype) != value) | ((cast < 0) != (value < 0))
            reason = f"is not exactly representable in {dtype}"
    if not bad.any():
        return None
    return f"{value.dtype} value {value[bad].flat[0].item()!r} {reason}"


def load(path, model=None):
    """Read the state dict saved at ``path``; with a ``model``, also load it into the model.

    Before anything is written into the model, every tensor whose dtype
    differs from the model's is checked to cast without changing a value, and
    the model checks keys and shapes; errors name the file.
    """
    name = os.fspath(path)
    state = load_state_dict_file(path)
    if model is not None:
        current = model.state_dict()
        for key, value in state.items():
            if key in current:
                problem = _cast_problem(value, np.asarray(current[key]).dtype)
                if problem:
                    raise ValueError(f"{name}: tensor {key!r}: {problem}")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise RuntimeError(f"{name}: {e}") from e
    return state


# ----------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------


def save(model, path, metadata=None):
    """Save a model's ``state_dict()``, or a state dict itself, to ``path`` (safetensors, atomic)."""
    state = model if isinstance(model, Mapping) else model.state_dict()
    save_state_dict(state, path, metadata=metadata)

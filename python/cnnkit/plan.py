"""Native inference plans: a model in eval mode compiled once, then run by C++ with one call per batch.

``plan = model.compile_inference((3, 32, 32))`` (or ``compile_inference(model, input_shape)``)
walks the model once and builds a plan of native ops:

- each ``Conv2d`` followed by an eval-mode ``BatchNorm2d`` gets the batch norm folded into its
  weights and bias (``Linear`` + ``BatchNorm1d`` likewise); a batch norm after anything else
  becomes one per-channel scale-and-shift pass;
- an activation (ReLU, LeakyReLU, ELU, ReLU6, Sigmoid, Tanh, Softplus) and the add of a
  ``Residual`` block are fused into the epilogue of the op before them: ``y = act(conv(x) + b +
  shortcut)``. Where one of conv2d's direct kernels runs, it adds the bias itself and the add
  and the activation run as one threaded pass over its output right after it, chunk by chunk
  while each chunk is in cache (not inside the kernel's register tiles); where the plan's batched
  GEMM runs, bias, add and activation are all applied in the pass that writes the GEMM's output;
  where the plan's own direct kernel runs, it applies a ReLU to its register tiles before
  storing them, and otherwise the thread that wrote a band of output rows adds the residual and
  applies the activation to it right away;
- a ReLU, ReLU6 or LeakyReLU (slope >= 0) fused into an op that a ``MaxPool2d`` then reads moves
  to the pool's output: max commutes with those activations exactly, and the pass runs over a
  quarter of the values after a 2x2 window (where the op's kernel cannot fuse it, a whole pass
  over its output);
- pooling (max, average, adaptive average), local response normalisation, ``Flatten`` (a view)
  and ``Linear`` run natively; ``Dropout`` and ``Identity`` vanish.

Every intermediate activation lives in buffers the plan allocates at its first call and reuses
(values whose lifetimes do not overlap share one), reallocated only when the batch size changes.
Each convolution runs one of three ways (``conv_algo``): the kernel ``algo="auto"`` picks (a
layer's own ``algo`` applies to the layer-by-layer path only), the direct kernels with their
weights packed once instead of on every call; the plan's batched im2col + GEMM, whose epilogue
is fused into the pass that writes the GEMM's result back to NCHW, with the weights packed once
for the GEMM kernel (``_C.PackedMatrix``); or the plan's own direct kernel (``plan_direct``: one
group, kernel width 1, 3 or 5 with horizontal stride 1, or 1 or 3 with stride 2, AVX2 or
AVX-512), which puts output channels across the vector lanes and splits even a single image
across threads by bands of output rows; on 3x3 and 5x5 stride-1 layers the same kernel also
runs as Winograd F(2x2, 3x3) (16 products per input channel for each 2x2 block of outputs where
the direct convolution takes 36) or, on 5x5 layers of 8 or more input channels, F(2x2, 5x5) (36
where it takes 100; with fewer channels, whose short sums would leave its larger rounding outside
the tolerance rule, a 5x5 kernel runs as the four 3x3 parts of its 6x6 zero extension, 64 where it
takes 100): the weights' transforms packed once, the input's computed with the channels across
the lanes, the epilogue fused into the output's transform; within the tolerance rule of the
oracle, and exact on small-integer fills while the transforms' sums stay below 2**24 (for
F(2x2, 3x3) 36 times the direct sums' magnitude, for F(2x2, 5x5) 1384**2 times C max|w| max|x|,
so only on the smallest fills: -1..1 with 8 channels). ``Linear`` layers likewise run ``linear`` ("kernel") or
a GEMM with their weights packed once ("gemm"). By default every way that can run a layer is
timed on the first call after the batch size, the ISA cap or the thread count changed, and the
fastest is kept (:meth:`InferencePlan.describe` shows the choice); then the whole plan is timed
with those ways and with every convolution the direct kernel runs on it (op by op, on plain
values, another kernel can win where, between blocked values, the direct kernel is faster), and
the faster plan kept.

Activations are NCHW between ops, except between the plan's own direct convolutions
(``value_layout``): "blocked" keeps a value that one of them writes and only they read in
blocks of the vector width (NCHW16c with AVX-512: no transposes on the way out) where its
channels fill whole blocks, each plane inside a zero border as wide as the readers' padding (no
padded copies on the way in); "plain" keeps every value NCHW; "measure" (the default) times the
whole plan both ways on the first call and keeps the faster. The describe line of such a value
ends in ``[blocked, border 1]`` (or ``[border 1]`` for an NCHW one). The same bits every way.

A batch goes through the plan's first ops (up to the first ``Linear``, where every convolution
fits the plan's direct kernel: ResNet-20's whole convolutional part) one of two ways
(``batch_order``): "layer_major", each op over the whole batch with the threads splitting each op,
or "image_major", each thread taking whole images through all of those ops on its own, with no
wait between ops and each image's activations kept in that core's cache; the ops after them
then run layer-major. By default ("measure") both are timed on the first call with a batch of
two or more images on several threads, and the faster kept; the two give the same bits.
Image-major, each convolution runs the plan's direct kernel, except that a convolution whose
measured way is a kernel that can run one image at a time (direct_rows on a first layer of one
to three channels) is also timed that way, as a third order; with ``conv_algo="kernel"`` every
convolution of an image-major trunk runs its kernel image by image.

Layers a plan cannot run (any other module, ``Concat``, ``padding_mode`` other than "zeros",
batch norm without running statistics, ...) are refused at compile time with a
``NotImplementedError`` naming the layer; run those models layer by layer.

**Weights are copied into the plan.** So that a plan can never run with stale weights, compiling
makes every array it read (parameters and batch-norm statistics) read-only until the plan is
released: an in-place change (an optimizer step, ``w[...] = 0``) raises NumPy's "read-only"
``ValueError``, ``load_state_dict`` a ``RuntimeError`` naming the read-only keys, and a plan whose model had a parameter or buffer replaced
(``layer.weight.data = new``) raises ``RuntimeError`` when called. To train again, call
``plan.release()`` (or drop every reference to the plan) and compile a new plan afterwards.
"""

import weakref

import numpy as np

from . import _C
from . import functional as F
from . import nn


__all__ = ["InferencePlan", "compile_inference"]

# ReLU-family layers the epilogue runs: name and (alpha, beta, threshold) of cnnkit's ActParams.
_ACTIVATIONS = {
    nn.ReLU: lambda m: ("relu", 0.0, 1.0, 20.0),
    nn.ReLU6: lambda m: ("relu6", 0.0, 1.0, 20.0),
    nn.Sigmoid: lambda m: ("sigmoid", 0.0, 1.0, 20.0),
    nn.Tanh: lambda m: ("tanh", 0.0, 1.0, 20.0),
    nn.LeakyReLU: lambda m: ("leaky_relu", float(m.negative_slope), 1.0, 20.0),
    nn.ELU: lambda m: ("elu", float(m.alpha), 1.0, 20.0),
    nn.Softplus: lambda m: ("softplus", 0.0, float(m.beta), float(m.threshold)),
}
_NO_OPS = (nn.Identity, nn.Dropout, nn.Dropout2d)

# id(array) -> [array, plans holding it, whether it was writeable before the first one]
_locks = {}


def _lock(arrays):
    for a in arrays:
        entry = _locks.get(id(a))
        if entry is None:
            _locks[id(a)] = [a, 1, a.flags.writeable]
            a.flags.writeable = False
        else:
            entry[1] += 1


def _unlock(arrays):
    for a in arrays:
        entry = _locks.get(id(a))
        if entry is None:
            continue
        entry[1] -= 1
        if entry[1] == 0:
            del _locks[id(a)]
            if entry[2]:
                a.flags.writeable = True


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class _Pending:
    """The last op, not yet handed to the native plan, so that a following batch norm,
    activation or residual add can still be folded into it."""

    def __init__(self, kind, name, src, flat, **args):
        self.kind, self.name, self.src, self.flat, self.args = kind, name, src, flat, args
        self.residual, self.act = -1, None


def _epilogue_args(act, residual=-1):
    """The epilogue keywords of the plan's add_* methods for ``act`` (a tuple of _ACTIVATIONS, or
    None) and the residual value id."""
    kind, alpha, beta, threshold = act or ("", 0.0, 1.0, 20.0)
    return dict(residual=residual, act=kind, alpha=alpha, beta=beta, threshold=threshold)


class _Builder:
    def __init__(self, input_shape):
        self.plan = _C.InferencePlan(*input_shape)
        self.pending = None
        self.sources = []  # (owner, table, name, array): every array the plan read
        self.flat_values = {}  # value id -> whether it is a flattened (features,) vector

    # -- values: an int (already in the plan) or the _Pending op ------------------------
    def value(self, v):
        """``v`` as a value id of the plan, emitting the pending op if ``v`` is it."""
        if v is None or v is not self.pending:
            return v
        p, self.pending = self.pending, None
        v = getattr(self.plan, "add_" + p.kind)(p.name, p.src, **p.args, **_epilogue_args(p.act, p.residual))
        self.flat_values[v] = p.flat
        return v

    def start(self, kind, name, src, flat, **args):
        src = self.value(src)
        self.value(self.pending)
        self.pending = _Pending(kind, name, src, flat, **args)
        return self.pending

    def emit(self, method, name, src, *args, **kwargs):
        src = self.value(src)
        self.value(self.pending)
        return getattr(self.plan, method)(name, src, *args, **kwargs)

    def is_flat(self, v):
        return v.flat if isinstance(v, _Pending) else self.flat_values.get(v, False)

    # -- reading the model --------------------------------------------------------------
    def read(self, module, table, name):
        array = module._parameters[name].data if table == "_parameters" else module._buffers[name]
        self.sources.append((module, table, name, array))
        return array

    def lower(self, module, name, v):
        kind = type(module)
        # Exact types: a subclass may override forward.
        if kind is nn.Sequential:
            for child_name, child in module._modules.items():
                v = self.lower(child, f"{name}.{child_name}" if name else child_name, v)
            return v
        if kind is nn.Residual:
            return self.residual(module, name, v)
        if kind in _NO_OPS:
            return v
        if kind in _ACTIVATIONS:
            return self.activation(_ACTIVATIONS[kind](module), name, v)
        lower = _LOWERINGS.get(kind)
        if lower is None:
            raise NotImplementedError(
                f"compile_inference: layer {name or '(model)'!r} ({kind.__name__}) cannot run in a native "
                f"inference plan; supported: {_supported()}. Run this model layer by layer."
            )
        return lower(self, module, name, v)

    def activation(self, act, name, v):
        p = self.pending
        if v is p and p.act is None:
            p.act = act
            return p
        p = self.start("elementwise", name, v, self.is_flat(v))
        p.act = act
        return p

    def residual(self, module, name, v):
        x = self.value(v)  # read by both branches: nothing may fuse into it
        shortcut = self.value(self.lower(module.shortcut, f"{name}.shortcut", x))
        body = self.lower(module.body, f"{name}.body", x)
        if body is self.pending and body.residual < 0 and body.act is None:
            body.residual = shortcut
            return body
        p = self.start("elementwise", f"{name}(add)", body, self.is_flat(body))
        p.residual = shortcut
        return p


def _supported():
    names = ["Sequential", "Residual", "Identity", "Dropout", "Dropout2d"]
    names += [k.__name__ for k in _ACTIVATIONS] + [k.__name__ for k in _LOWERINGS]
    return ", ".join(names)


def _spatial(b, module, name, v):
    if b.is_flat(v):
        raise NotImplementedError(f"compile_inference: layer {name!r} ({type(module).__name__}) needs (C, H, W) "
                                  "images, but its input was flattened")


def _conv(b, m, name, v):
    _spatial(b, m, name, v)
    if m.padding_mode != "zeros":
        raise NotImplementedError(f"compile_inference: layer {name!r} (Conv2d) has padding_mode="
                                  f"{m.padding_mode!r}; a plan runs only padding_mode='zeros'")
    stride, dilation = _pair(m.stride), _pair(m.dilation)
    padding = F._conv_padding(m.padding, tuple(m.kernel_size), stride, dilation)
    weight = b.read(m, "_parameters", "weight")
    bias = b.read(m, "_parameters", "bias") if m.bias is not None else None
    return b.start("conv", name, v, False, weight=weight, bias=bias, stride=stride, padding=padding,
                   dilation=dilation, groups=m.groups)


def _linear(b, m, name, v):
    if not b.is_flat(v):
        raise NotImplementedError(f"compile_inference: layer {name!r} (Linear) needs a flattened input "
                                  "(put a Flatten before it); a plan does not apply Linear over the last axis")
    weight = b.read(m, "_parameters", "weight")
    bias = b.read(m, "_parameters", "bias") if m.bias is not None else None
    return b.start("linear", name, v, True, weight=weight, bias=bias)


def _batch_norm(b, m, name, v):
    if not m.track_running_stats:
        raise NotImplementedError(f"compile_inference: layer {name!r} ({type(m).__name__}) has no running "
                                  "statistics (track_running_stats=False): it normalises with each batch's own")
    if isinstance(m, nn.BatchNorm2d):
        _spatial(b, m, name, v)
    elif not b.is_flat(v):
        raise NotImplementedError(f"compile_inference: layer {name!r} (BatchNorm1d) needs a flattened input")
    mean = b.read(m, "_buffers", "running_mean").astype(np.float64)
    var = b.read(m, "_buffers", "running_var").astype(np.float64)
    gamma = b.read(m, "_parameters", "weight").astype(np.float64) if m.affine else 1.0
    beta = b.read(m, "_parameters", "bias").astype(np.float64) if m.affine else 0.0
    scale = gamma / np.sqrt(var + m.eps)
    shift = beta - mean * scale
    p = b.pending
    if v is p and p.kind in ("conv", "linear") and p.residual < 0 and p.act is None:
        # Fold: w' = w * scale per output channel, b' = b * scale + shift, in float64.
        w = p.args["weight"].astype(np.float64)
        p.args["weight"] = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        old = p.args["bias"].astype(np.float64) if p.args["bias"] is not None else 0.0
        p.args["bias"] = (old * scale + shift).astype(np.float32)
        p.name = f"{p.name}+{name}"
        return p
    return b.start("channel_affine", name, v, b.is_flat(v), scale=scale.astype(np.float32),
                   shift=shift.astype(np.float32))


def _commutes_with_max(act):
    """Whether act(max(a, b)) is max(act(a), act(b)) bit for bit: the piecewise-linear activations
    that never decrease (each float operation in them rounds monotonically); not those computed
    through exp, whose float results need not be monotonic."""
    kind, alpha = act[0], act[1]
    return kind in ("relu", "relu6") or (kind == "leaky_relu" and alpha >= 0)


def _max_pool(b, m, name, v):
    _spatial(b, m, name, v)
    stride = m.kernel_size if m.stride is None else m.stride
    # An activation the op before would apply to every value runs on the pooled ones instead (4x
    # fewer after a 2x2 window); the pool is that value's only reader while it is pending.
    p, act = b.pending, None
    if v is p and p.act is not None and _commutes_with_max(p.act):
        act, p.act = p.act, None
    return b.emit("add_max_pool", name, v, _pair(m.kernel_size), _pair(stride), _pair(m.padding),
                  _pair(m.dilation), bool(m.ceil_mode), **_epilogue_args(act))


def _avg_pool(b, m, name, v):
    _spatial(b, m, name, v)
    if m.divisor_override is not None:
        raise NotImplementedError(f"compile_inference: layer {name!r} (AvgPool2d) has a divisor_override")
    stride = m.kernel_size if m.stride is None else m.stride
    return b.emit("add_avg_pool", name, v, _pair(m.kernel_size), _pair(stride), _pair(m.padding),
                  bool(m.ceil_mode), bool(m.count_include_pad))


def _adaptive_avg_pool(b, m, name, v):
    _spatial(b, m, name, v)
    src = b.value(v)
    _, h, w = b.plan.value_shape(src)
    oh, ow = _pair(m.output_size)
    return b.emit("add_adaptive_avg_pool", name, src, h if oh is None else oh, w if ow is None else ow)


def _lrn(b, m, name, v):
    _spatial(b, m, name, v)
    return b.emit("add_lrn", name, v, int(m.size), float(m.alpha), float(m.beta), float(m.k))


def _flatten(b, m, name, v):
    if (m.start_dim, m.end_dim) != (1, -1):
        raise NotImplementedError(f"compile_inference: layer {name!r} (Flatten) has start_dim={m.start_dim}, "
                                  f"end_dim={m.end_dim}; a plan flattens (C, H, W) only (start_dim=1, end_dim=-1)")
    v = b.value(v)
    b.flat_values[v] = True
    return v


_LOWERINGS = {
    nn.Conv2d: _conv, nn.Linear: _linear, nn.BatchNorm2d: _batch_norm, nn.BatchNorm1d: _batch_norm,
    nn.MaxPool2d: _max_pool, nn.AvgPool2d: _avg_pool, nn.AdaptiveAvgPool2d: _adaptive_avg_pool,
    nn.LocalResponseNorm: _lrn, nn.Flatten: _flatten,
}


class InferencePlan:
    """A compiled model: ``plan(x)`` runs a batch (N, C, H, W) natively and returns a new array;
    ``plan(x, out=y)`` writes into ``y`` instead. See the module's documentation."""

    def __init__(self, model, input_shape, conv_algo="measure", batch_order="measure", value_layout="measure"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a cnnkit.nn.Module, got {type(model).__name__}")
        shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
        if shape is None or len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
            raise ValueError(f"input_shape must be (C, H, W) of positive ints (no batch axis), got {input_shape!r}")
        training = [name or "(model)" for name, mod in model.named_modules() if mod.training]
        if training:
            raise ValueError(f"compile_inference needs a model in eval mode (call model.eval() first); "
                             f"in training mode: {', '.join(training[:5])}")
        for name, value in (("conv_algo", conv_algo), ("batch_order", batch_order), ("value_layout", value_layout)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        b = _Builder(tuple(int(d) for d in shape))
        b.plan.set_conv_choice(conv_algo)
        b.plan.set_batch_order(batch_order)
        b.plan.set_value_layout(value_layout)
        out = b.value(b.lower(model, "", 0))
        self._plan = b.plan
        self._flat_out = b.flat_values.get(out, False)
        self.input_shape = tuple(int(d) for d in shape)
        c, h, w = b.plan.value_shape(b.plan.output)
        self.output_shape = (c * h * w,) if self._flat_out else (c, h, w)
        self._sources = b.sources
        # The same, as columns for _C.plan_sources_unchanged: the module's own dicts (created
        # with it, never replaced), the names and the arrays, parameters apart from buffers.
        params = [(getattr(m, t), n, a) for m, t, n, a in b.sources if t == "_parameters"]
        buffers = [(getattr(m, t), n, a) for m, t, n, a in b.sources if t != "_parameters"]
        self._param_columns = tuple(zip(*params)) or ((), (), ())
        self._buffer_columns = tuple(zip(*buffers)) or ((), (), ())
        arrays = [s[3] for s in b.sources]
        _lock(arrays)
        self._finalizer = weakref.finalize(self, _unlock, arrays)

    def _check_sources(self):
        # Every call checks every source (107 for resnet20), natively; the loop below only finds
        # which one was replaced.
        if _C.plan_sources_unchanged(*self._param_columns, *self._buffer_columns):
            return
        for module, table, name, array in self._sources:
            current = getattr(module, table)[name]
            if (current.data if table == "_parameters" else current) is not array:
                raise RuntimeError(f"the model's {type(module).__name__}.{name} was replaced after "
                                   "compile_inference(): this plan holds the old weights; compile again")

    def __call__(self, x, out=None):
        return self._run(x, out, False)[0]

    def profile(self, x):
        """Run ``x`` once and return ``[(op description, seconds), ...]``: each native op's wall
        time, its epilogue included (for per-layer % of peak in a harness). The ops run
        layer-major here, whatever ``batch_order`` chose."""
        seconds = self._run(x, None, True)[1]
        return list(zip(self._plan.describe().splitlines(), seconds))

    def _run(self, x, out, profile):
        if not self._finalizer.alive:
            raise RuntimeError("this InferencePlan was released; compile the model again")
        self._check_sources()
        x = F._as_float32(x, "x")
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        shape = (x.shape[0],) + self.output_shape
        if out is None:
            out = np.empty(shape, np.float32)
        elif not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float32:
            raise ValueError(f"out must be a float32 ndarray of shape {shape}, got "
                             f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
        return out, self._plan.run(x, out, profile)

    def release(self):
        """Make the model's weights writeable again (unless another plan holds them); this plan
        then refuses to run."""
        self._finalizer()

    def describe(self):
        """One line per native op: the layers it runs, the kernel chosen at the last call, the
        fused bias, residual and activation, and its output shape per image."""
        return self._plan.describe()

    @property
    def num_ops(self):
        return self._plan.num_ops


def compile_inference(model, input_shape, conv_algo="measure", batch_order="measure", value_layout="measure"):
    """Compile ``model`` (in eval mode) for inputs of shape (N, *input_shape); returns an
    :class:`InferencePlan`. ``conv_algo`` is how each convolution runs: "kernel" (the kernel
    ``algo="auto"`` picks, direct kernels with weights packed once; bias in the kernel, the
    epilogue as a pass after it), "gemm" (im2col of a chunk of images side by side and one GEMM,
    bias and epilogue fused into the pass that writes the GEMM's output back to NCHW), "direct"
    (the plan's own direct kernel, epilogue fused, for the layers it runs under the ISA cap;
    "kernel" for the others), "direct_block_major" (the same, each image's work ordered by
    output-channel block, so that weights larger than the L2 cache are read once per image
    rather than once per band of rows), "winograd" (as "direct", with the 3x3 and 5x5 stride-1
    layers as Winograd F(2x2, 3x3) or F(2x2, 5x5)) or "measure" (the default: every way that can run a
    layer timed on the first call of each batch size, ISA cap and thread count, the fastest
    kept; that first call costs a few times a normal one). Linear layers follow the same
    choice: "kernel" runs the library's linear (both "direct" choices too), "gemm" their
    weights packed once. ``batch_order`` is how a batch goes through the ops before the first
    linear layer, where the plan's direct kernel runs every convolution among them (with
    conv_algo="kernel", their kernels):
    "layer_major" (each op over the whole batch), "image_major" (each thread takes whole images
    through them) or "measure" (the default: both timed on the first call of a batch of two or
    more on several threads, and image-major with the measured kernels of the layers where one
    runs image by image, the fastest kept). ``value_layout`` is how the values between the
    plan's direct convolutions lie: "plain" (NCHW), "blocked" (NCHW16c where the channels allow,
    zero-bordered for the readers' padding) or "measure" (the default: the whole plan timed
    both ways on the first call, the faster kept)."""
    return InferencePlan(model, input_shape, conv_algo, batch_order, value_layout)

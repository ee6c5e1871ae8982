"""The benchmark harness: shape files parse, a tiny run produces rows and JSON, the peak is sane."""

import json

import numpy as np
import pytest

from cnnkit import _C, bench


def test_every_bundled_shape_file_parses_to_valid_convolutions():
    files = bench.shape_files()
    assert {"targets", "lenet5", "alexnet", "vgg", "resnet", "mobilenet", "mnist_cnn"} <= set(files)
    for name in files:
        for s in bench.load_shapes(name):
            assert s.C % s.groups == 0 and s.K % s.groups == 0, (name, s)
            assert bench.conv_flops(s) > 0, (name, s)


def test_bad_shape_file_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("# header\nc1 1 2 3\n")
    with pytest.raises(ValueError, match="bad.txt:2: expected 12 fields"):
        bench.load_shapes(str(path))


def test_interleaved_returns_a_median_per_contender():
    times = bench.interleaved({"a": lambda: None, "b": lambda: sum(range(100))}, rounds=3, min_time=0.001)
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())


def test_peak_is_positive_and_rejects_bad_arguments():
    assert _C.peak_gflops(1, 0.02) > 0.5
    with pytest.raises(ValueError):
        _C.peak_gflops(0)


def test_a_small_run_writes_rows_and_json(tmp_path):
    shapes = tmp_path / "tiny.txt"
    shapes.write_text("tiny 2 3 8 8 4 3 3 1 1 1 1\n")
    out = tmp_path / "result.json"
    report = bench.run(["conv"], shapes=[str(shapes)], threads=1, rounds=1, use_torch=False, json_path=str(out))
    doc = json.loads(out.read_text())
    assert doc["threads"] == 1 and doc["peak_gflops"] > 0
    suites = [r["suite"] for r in report.rows]
    assert suites == ["conv-fwd", "conv-f+b"]
    row = report.rows[0]
    assert set(row["seconds"]) == {"cnnkit-auto", "cnnkit-direct", "cnnkit-im2col"}
    assert np.isclose(row["gflops"]["cnnkit-auto"], row["flops"] / row["seconds"]["cnnkit-auto"] / 1e9)


def test_ops_and_linear_suites_run_without_a_peer():
    report = bench.run(["ops", "linear"], threads=1, rounds=1, use_torch=False)
    names = {r["name"] for r in report.rows}
    assert {"tanh 64x6x28x28", "avg_pool 2x2/2 64x6x28x28", "cross_entropy 256x1000", "84->10 b1"} <= names
    assert all("ratio" not in r for r in report.rows)


def test_torch_suite_times_plain_and_accelerated_training_steps():
    torch = pytest.importorskip("torch")
    report = bench.Report(peak_gflops=1.0, threads=1)
    bench.bench_torch(report, torch, rounds=1, batches=(("lenet5", 2), ("resnet8", 2)))
    assert [r["name"] for r in report.rows] == ["lenet5 train b2", "resnet8 train b2"]
    for row in report.rows:
        assert row["suite"] == "torch" and set(row["seconds"]) == {"torch", "accelerated"}
        assert row["ratio"] == row["seconds"]["torch"] / row["seconds"]["accelerated"]


def test_peak_is_a_ceiling_when_other_processes_hold_cores(monkeypatch):
    """With a core busy, the all-thread samples read one core's rate: the one-thread rate times the
    thread count must win, and the best of the trials counts."""
    samples = iter([90.0, 50.0, 100.0, 60.0, 95.0, 55.0])  # (threads=4, threads=1) per trial
    calls = []

    def fake_peak(threads, seconds):
        calls.append(threads)
        return next(samples)

    monkeypatch.setattr(_C, "peak_gflops", fake_peak)
    assert bench.measure_peak(4, trials=3) == 4 * 60.0
    assert calls == [4, 1, 4, 1, 4, 1]


def test_rows_above_the_peak_are_marked_and_explained(capsys):
    report = bench.Report(peak_gflops=10.0, threads=1)
    fine = report.add("conv-fwd", "ok", 9e9, {"cnnkit": 1.0})
    above = report.add("conv-fwd", "fast", 12e9, {"cnnkit": 1.0})
    report.note_above_peak()
    out = capsys.readouterr().out.splitlines()
    assert "above_peak" not in fine and above["above_peak"] and above["pct_peak"]["cnnkit"] == pytest.approx(120.0)
    assert out[0].endswith("90.0% ") and "120.0%!" in out[1]
    assert out[2].startswith("! above the measured peak")


def test_models_suite_writes_every_contender_ratio_and_peak_share(tmp_path):
    """A tiny run of the models suite: LeNet-5 inference at batch 1 and a training step at batch 2
    against PyTorch and ONNX Runtime, one round; the rows and the JSON carry what the harness reports."""
    torch = pytest.importorskip("torch")
    report = bench.Report(peak_gflops=100.0, threads=1)
    bench.bench_models(report, torch, rounds=1, names=("lenet5",), train_batch=2, infer_batches=(1,))
    bench._summarize_models(report)
    out = tmp_path / "models.json"
    report.to_json(str(out))
    doc = json.loads(out.read_text())
    rows = {r["name"] + " " + r["suite"]: r for r in doc["rows"]}
    infer, train = rows["lenet5 b1 infer"], rows["lenet5 b2 train"]
    try:
        import onnxruntime  # noqa: F401
        peers = {"torch", "onnxruntime"}
    except ImportError:
        peers = {"torch"}
    assert set(infer["seconds"]) == {"cnnkit"} | peers and set(infer["ratios"]) == peers
    assert set(train["seconds"]) == {"cnnkit", "torch"}
    # The zoo's models compile to a plan, released before the training step updates the weights.
    assert infer["cnnkit_path"] == "plan"
    # LeNet-5's conv and linear multiply-adds per image: 28x28x6x25 + 10x10x16x150 + 400x120 + 120x84 + 84x10.
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert infer["flops"] == 2 * macs
    # Training: forward, weight gradient and input gradient, less the first conv's input gradient.
    assert train["flops"] == 2 * (3 * 2 * macs - 2 * 28 * 28 * 6 * 25)
    for row in (infer, train):
        for peer in row["ratios"]:
            assert row["ratios"][peer] == pytest.approx(row["seconds"][peer] / row["seconds"]["cnnkit"])
        assert row["pct_peak"]["cnnkit"] == pytest.approx(row["flops"] / row["seconds"]["cnnkit"] / 1e9)
    assert doc["summary"]["models"]["train b2"]["torch"]["min_model"] == "lenet5"


@pytest.mark.parametrize("name", bench.ZOO_MODELS)
def test_zoo_twins_match_cnnkit_in_outputs_and_gradients(name):
    """The harness's torch twin of each zoo model (the package's converter, weights copied) against
    cnnkit: forward, input and parameter gradients with the twin in float64; batch statistics in
    training mode, except for models with dropout, whose masks differ (eval mode there)."""
    torch = pytest.importorskip("torch")
    import cnnkit
    from cnnkit import _twins, nn

    cnnkit.manual_seed(0)
    ours = bench._zoo_model(name)
    has_dropout = any(isinstance(m, nn.Dropout) for m in ours.modules())
    ours.train(not has_dropout)
    theirs = _twins.torch_twin(torch, ours).double()
    assert theirs.training == ours.training
    x = np.random.default_rng(1).standard_normal((4, *bench._MODEL_INPUTS[name])).astype(np.float32)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    expected = theirs(xt)
    out = ours(x)
    g = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    expected.backward(torch.tensor(g, dtype=torch.float64))
    dx = ours.backward(g)
    # The forward is continuous, so float32 stays close to float64 everywhere (as the DAG models'
    # twin test). Gradients are not: a ReLU input or two max-pool candidates within float32
    # rounding of each other send a whole element's gradient another way (seen: a ReLU input of
    # 5e-7 in resnet20 moved its input gradient by 1.2% of its largest value, PyTorch's float32
    # agreeing with float64 there). What a wrong twin would break -- a layer's weights, stride,
    # padding or order -- moves them by far more than 2% of their largest value.
    expected_out = expected.detach().numpy()
    np.testing.assert_allclose(out, expected_out, rtol=1e-3, atol=1e-4 * np.abs(expected_out).max())

    def close(a, b, what, scale):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-2 * scale, err_msg=f"{name}: {what}")

    close(dx, xt.grad.numpy(), "input gradient", np.abs(xt.grad.numpy()).max())
    tparams = dict(theirs.named_parameters())
    grad_scale = max(np.abs(t.grad.numpy()).max() for t in tparams.values())
    for pname, p in ours.named_parameters():
        close(p.grad, tparams[pname].grad.numpy(), f"grad of {pname}", grad_scale)


def test_twin_refuses_a_layer_it_cannot_convert():
    torch = pytest.importorskip("torch")
    from cnnkit import _twins, nn

    with pytest.raises(TypeError, match="no torch twin for PReLU"):
        _twins.torch_twin(torch, nn.Sequential(nn.Conv2d(1, 2, 3), nn.PReLU()))


def test_inference_uses_a_compiled_plan_when_the_model_offers_one():
    from cnnkit import models, plan

    model = models.lenet5().eval()
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    expected = model(x)
    fn, path = bench._inference_fn(model, (1, 28, 28))
    assert path == "plan" and isinstance(fn, plan.InferencePlan)
    np.testing.assert_allclose(fn(x), expected, rtol=1e-4, atol=1e-5)
    fn.release()

    class LayersOnly:
        def __call__(self, x):
            return "layers"

    model = LayersOnly()
    fn, path = bench._inference_fn(model, (1, 28, 28))
    assert path == "layers" and fn is model


def test_layers_suite_times_each_layer_of_one_model():
    torch = pytest.importorskip("torch")
    report = bench.Report(peak_gflops=100.0, threads=1)
    bench.bench_model_layers(report, torch, rounds=1, name="lenet5", batch=2)
    names = [r["name"] for r in report.rows]
    assert names[0] == "lenet5.0 Conv2d" and names[-1] == "lenet5.11 Linear" and "lenet5.6 Flatten" not in names
    first, second = report.rows[0], report.rows[3]
    # The first conv computes no input gradient (2 passes), the second all three.
    assert first["flops"] == 2 * 2 * (2 * 28 * 28 * 6 * 25) and second["flops"] == 3 * 2 * (2 * 10 * 10 * 16 * 150)
    assert all(set(r["seconds"]) == {"cnnkit", "torch"} and r["ratio"] > 0 for r in report.rows)


def test_bench_models_command_runs_one_model_and_its_layers(tmp_path, capsys):
    pytest.importorskip("torch")
    from cnnkit import cli

    out = tmp_path / "models.json"
    cli.main(["bench", "models", "--models", "lenet5", "--model", "lenet5", "--threads", "1", "--rounds", "1",
              "--no-onnx", "--json", str(out)])
    doc = json.loads(out.read_text())
    suites = {r["suite"] for r in doc["rows"]}
    assert suites == {"infer", "train", "layer"} and doc["threads"] == 1
    assert {r["name"] for r in doc["rows"] if r["suite"] != "layer"} == {"lenet5 b1", "lenet5 b64"}
    assert all(set(r["seconds"]) == {"cnnkit", "torch"} for r in doc["rows"])
    assert set(doc["summary"]["models"]) == {"infer b1", "infer b64", "train b64"}
    assert {"Conv2d", "Linear", "Tanh", "AvgPool2d"} <= set(doc["summary"]["layers"]["lenet5"]["seconds_by_type"])
    assert "lenet5 Conv2d: cnnkit" in capsys.readouterr().out


@pytest.mark.parametrize("load,warned", [(0.3, False), (7.5, True)])
def test_a_loaded_machine_is_recorded_and_warned_about(monkeypatch, capsys, load, warned):
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    report = bench.Report(peak_gflops=1.0, threads=2)
    bench._note_load(report)
    assert report.summary["load_average"] == load
    assert ("load average 7.5 on 2 cores" in capsys.readouterr().out) == warned


def test_cpu_clock_times_one_thread_and_is_restored_after_the_run(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="clock='cpu' needs threads=1"):
        bench.run(["gemm"], threads=2, rounds=1, use_torch=False, clock="cpu")
    with pytest.raises(ValueError, match="clock must be one of wall, cpu"):
        bench.run(["gemm"], threads=1, rounds=1, use_torch=False, clock="cycles")
    read = []

    def process_time():
        read.append(1)
        return len(read) * 1e-3

    monkeypatch.setitem(bench._CLOCKS, "cpu", process_time)
    shapes = tmp_path / "tiny.txt"
    shapes.write_text("tiny 2 3 8 8 4 3 3 1 1 1 1\n")
    report = bench.run(["conv"], shapes=[str(shapes)], threads=1, rounds=1, use_torch=False, clock="cpu")
    # Two rows of contenders, one sample each, two clock reads per sample.
    assert len(read) == 2 * (3 + 1) and report.summary["clock"] == "cpu"
    assert bench._sample_clock[0] is bench.time.perf_counter


@pytest.mark.parametrize("argv,suites", [
    ([], ["targets", "gemm", "pool", "ops", "linear", "models"]),
    (["gemm"], ["gemm"]),
    (["--models", "vgg11"], ["models"]),
    (["gemm", "--model", "resnet20"], ["gemm", "models"]),
    (["models", "--models", "lenet5"], ["models"]),
])
def test_bench_command_runs_the_models_suite_when_its_options_are_given(monkeypatch, argv, suites):
    from cnnkit import cli

    seen = {}
    monkeypatch.setattr(bench, "run", lambda s, **kw: seen.update(suites=s, **kw))
    cli.main(["bench", *argv])
    assert seen["suites"] == suites

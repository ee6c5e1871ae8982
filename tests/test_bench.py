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

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

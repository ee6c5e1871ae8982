#!/usr/bin/env bash
# The GPU check of cnnkit's CUDA backend, in one call: build, GPU tests, LeNet-5 trained on the GPU
# against the CPU with the same recipe, and the CUDA bench against PyTorch.
#
#   benchmarks/gpu_check.sh OUTDIR
#
# Written for a fresh GPU machine with no network that has PyTorch (CUDA), nvcc, CMake, pybind11,
# scikit-build-core, NumPy, pytest and hypothesis installed, and CuPy or not (the tests then use
# PyTorch CUDA tensors). It installs cnnkit from this checkout into the running Python (no build
# isolation, no dependencies fetched) and writes at most 8 files, all directly in OUTDIR:
#   build.log, device.log, tests.log, train_cpu.log, train_cuda.log, bench.log, bench_cuda.json, summary.txt
# Every step has a time limit so that the whole run ends inside 10 minutes (on an H100 it should
# take a few); a failed step is recorded in summary.txt and the next one still runs. The exit
# status is the number of failed steps.
set -u

OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SUMMARY=$OUT/summary.txt
FAILED=0
: >"$SUMMARY"
START=$(date +%s)

note() { echo "$*" | tee -a "$SUMMARY"; }

step() {  # step NAME LIMIT_SECONDS LOG COMMAND...: run, time and record one step
    local name=$1 limit=$2 log=$3 t0=$SECONDS rc
    shift 3
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        note "ok     $name ($((SECONDS - t0)) s)"
    else
        FAILED=$((FAILED + 1))
        note "FAILED $name: exit $rc$([ "$rc" -eq 124 ] && echo ", over its ${limit} s limit") ($((SECONDS - t0)) s); see $(basename "$log")"
    fi
    return "$rc"
}

note "cnnkit GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$SUMMARY"
ARCH=native
nvidia-smi >/dev/null 2>&1 || ARCH=90  # no GPU to ask: build for Hopper, the machines this is run on
note "python: $($PY -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)' 2>&1)"
note "cupy: $($PY -c 'import cupy; print(cupy.__version__)' 2>/dev/null || echo 'absent: the tests use PyTorch CUDA tensors')"

# 1. Build and install (CUDA for this card only, all cores).
export CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=$ARCH" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
if ! step "build and install (CMAKE_CUDA_ARCHITECTURES=$ARCH)" 220 "$OUT/build.log" \
        $PY -m pip install --no-build-isolation --no-deps --no-index -v .; then
    note "nothing else can run without a build"
    exit "$FAILED"
fi
$PY -m cnnkit info >>"$SUMMARY" 2>&1
# Without a device every GPU test would skip and the run would look green: that is a failure here.
step "cnnkit sees the GPU" 60 "$OUT/device.log" $PY -c \
    "import sys, cnnkit; sys.exit(0 if cnnkit.cuda.is_available() else 'no GPU: ' + cnnkit.cuda.unavailable_reason())"

# 2. LeNet-5 on the CPU with cnnkit train's default recipe, in the background while the GPU tests run.
TRAIN_ARGS=(train --model lenet5 --seed 0 --quiet --checkpoint-every 0)
timeout 300 $PY -m cnnkit "${TRAIN_ARGS[@]}" --out "$OUT/run_cpu" >"$OUT/train_cpu.log" 2>&1 &
CPU_TRAIN=$!

# 3. The GPU tests: every test with a CUDA parameter (the device-parametrised oracle tests) and
#    the CUDA test files (their emulator tests too), against the installed cnnkit (not the source
#    tree), on 8 processes where pytest-xdist is installed.
PARALLEL=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
step "GPU tests" 180 "$OUT/tests.log" \
    $PY -m pytest -q -p no:cacheprovider -rs --durations=15 $PARALLEL tests -k cuda

# 4. The same recipe on the GPU; then both accuracies side by side.
step "cnnkit train --device cuda (LeNet-5)" 80 "$OUT/train_cuda.log" \
    $PY -m cnnkit "${TRAIN_ARGS[@]}" --device cuda --out "$OUT/run_cuda"
wait "$CPU_TRAIN" || { FAILED=$((FAILED + 1)); note "FAILED cnnkit train on the CPU; see train_cpu.log"; }
$PY - "$OUT" <<'EOF' | tee -a "$SUMMARY"
import json, os, sys
acc = {}
for device in ("cpu", "cuda"):
    try:
        with open(os.path.join(sys.argv[1], f"run_{device}", "run.json")) as f:
            run = json.load(f)
        acc[device] = run["test_accuracy"]
        print(f"LeNet-5 on {device}: test accuracy {run['test_accuracy']:.4f}, "
              f"{run['train_images_per_s']:.0f} training images/s")
    except (OSError, KeyError, ValueError) as e:
        print(f"LeNet-5 on {device}: no result ({e})")
if len(acc) == 2:
    verdict = "same accuracy" if abs(acc["cuda"] - acc["cpu"]) <= 0.01 else "ACCURACIES DIFFER"
    print(f"GPU - CPU accuracy: {acc['cuda'] - acc['cpu']:+.4f} ({verdict}, within 0.01 counts as the same)")
EOF
# The run folders hold weights and plots: only their run.json files matter, and OUTDIR keeps at most 8 files.
rm -rf "$OUT/run_cpu" "$OUT/run_cuda"

# 5. The CUDA bench against PyTorch (TF32 off), with the issue's targets table at its end.
step "cnnkit bench --device cuda" 90 "$OUT/bench.log" \
    $PY -m cnnkit bench --device cuda --json "$OUT/bench_cuda.json"
sed -n '/^| workload/,$p' "$OUT/bench.log" >>"$SUMMARY"

note "$FAILED failed step(s), $(($(date +%s) - START)) s in all"
exit "$FAILED"

#!/usr/bin/env bash
# The prepared GPU suite: what a session runs at once when a GPU is lent (one call, < 9 minutes).
# GPU tests, then the GPU benchmarks, each under its own time limit so one slow step cannot eat
# the others; every output goes to $OUT (or ./gpu-suite-out) for benchmarks/README.md.
#
#   bash benchmarks/gpu_suite.sh            # after `pip install -e '.[test]'`
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-suite-out}"
mkdir -p "$out"
python -c "import sys, torch; sys.exit(0) if torch.cuda.is_available() else sys.exit('gpu_suite: no CUDA device')" || exit 2
python -c "import torch; print(torch.cuda.get_device_name(0), torch.__version__)" | tee "$out/device.txt"
step() {  # step NAME SECONDS COMMAND...: run, keep its output, never stop the suite
    local name=$1 limit=$2
    shift 2
    echo "+ $*" | tee "$out/$name.txt"
    timeout "$limit" "$@" >>"$out/$name.txt" 2>&1
    echo "rc=$?" | tee -a "$out/$name.txt"
}
step tests 120 python -m pytest -q tests/test_gpu.py
step bench_models 120 python benchmarks/bench_models.py --cuda
step bench_sample 150 python benchmarks/bench_sample.py --json "$out/bench_sample.json"
step bench_features 60 python benchmarks/bench_features.py --device cuda --batch-size 64 --images 512
step bench_bootstrap 90 python benchmarks/bench_bootstrap.py --n 50000 --dim 2048 --replicates 20 --device cuda
tail -n 3 "$out"/*.txt

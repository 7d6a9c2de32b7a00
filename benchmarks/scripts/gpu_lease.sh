#!/usr/bin/env bash
# What one short GPU lease runs, each step time-boxed so that the results of the finished steps
# survive: the GPU's description, throughput at 256 x 256, then a benchmark config (default
# acdc_gpu_lease.yaml). (The CUDA tests are a separate call: `python -m pytest tests/test_reliability.py`.)
#   bash benchmarks/scripts/gpu_lease.sh OUT_DIR [BENCH_SECONDS (0: no limit)] [CONFIG]
# Needs the ACDC dataset folder at data/acdc_ssl4mis (or ../shared/data/acdc to build it).
set -uo pipefail
out=${1:?usage: gpu_lease.sh OUT_DIR [BENCH_SECONDS] [CONFIG]}
bench_seconds=${2:-420}
config=${3:-benchmarks/configs/acdc_gpu_lease.yaml}
mkdir -p "$out"
[ -f data/acdc_ssl4mis/dataset.json ] || python3 -m idealseg prepare ssl4mis ../shared/data/acdc data/acdc_ssl4mis
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
timeout 100 python3 benchmarks/scripts/throughput.py data/acdc_ssl4mis --size 256 --batch 24 --steps 40 \
    --workers 8 --out "$out" 2>&1 | grep -v "it/s\|case/s" | tail -30
timeout "$bench_seconds" python3 -m idealseg benchmark "$config" 2>&1 \
    | tr '\r' '\n' | grep -v "^\s*$" | awk 'NR % 50 == 0 || /Error|error|Dice|cell|calibrat/' | tail -60
python3 -m idealseg benchmark "$config" --report-only

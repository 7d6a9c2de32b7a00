#!/usr/bin/env bash
# One 15-minute GPU lease spent on the gpu protocol (METHOD.md section 7: 256 x 256, batch 12 + 12,
# IDEAL 11k pre-training + 30k fine-tuning steps, supervised 30k steps) at 7 labelled patients, after
# the GPU-only tests; the throughput run (with a compiled row) is its own action. The lent machine
# reaches nothing outside it, so the dataset travels packed (benchmarks/scripts/pack_dataset.py, 52 MiB) and
# MONAI, nibabel and pytest as wheels:
#   python benchmarks/scripts/pack_dataset.py pack data/acdc_ssl4mis .pack/acdc_ssl4mis.npz.xz
#   pip download --no-deps -d .whl monai==1.6.1 nibabel==5.4.2 pytest pluggy iniconfig pygments
# Then, through the device tool, carrying .pack and .whl:
#   bash benchmarks/scripts/gpu_protocol.sh start "$OUT" 540   # set-up, GPU tests, the protocol started;
#                                                      # waits until 540 s after its start, then collects
#   bash benchmarks/scripts/gpu_protocol.sh collect "$OUT" 280 # on the same warm machine: waits up to 280 s more
#   bash benchmarks/scripts/gpu_protocol.sh throughput "$OUT" 0  # set-up and benchmarks/scripts/throughput.py only
#   bash benchmarks/scripts/gpu_protocol.sh profile "$OUT" 0     # set-up, then IDEAL's steps profiled (wall against
#                                                        # device-busy time), eager and with CUDA graphs
# The protocol runs IDEAL's cells, then supervised's, detached from the call (setsid) so that it goes
# on between calls, into /tmp/acdc_gpu: the device tool re-copies the working tree at each call and
# removed a results folder inside it while runs were writing (lease of 2026-11-27). `collect` packs
# what they have written (logs, summaries, evaluations; no checkpoints) into $OUT/acdc_gpu.tgz;
# $OUT/wall.txt has each method's wall-clock start and end (end to end: pre-training, fine-tuning,
# validation every 1000 steps and the evaluation).
# On that lease IDEAL and supervised trained side by side on the one GPU: each ran at about half its
# speed alone, so side by side gains nothing over one after the other.
set -uo pipefail
action=${1:?usage: gpu_protocol.sh start|collect OUT SECONDS}
out=${2:?OUT}
seconds=${3:?SECONDS}
t0=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/src
logs=/tmp/protocol
mkdir -p "$out" "$logs"

protocol() {  # IDEAL's cells first (the method under study), then supervised's
    for name in ideal supervised; do
        echo "$name start $(date +%s)" >> "$logs/wall.txt"
        python3 -m idealseg benchmark benchmarks/configs/acdc_gpu.yaml --out /tmp/acdc_gpu --only "$name" --seeds 0 \
            --labeled ssl4mis:7 > "$logs/$name.log" 2>&1
        rc=$?
        echo "$name end $(date +%s) rc $rc" >> "$logs/wall.txt"
    done
}

setup() {
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    [ -f data/acdc_ssl4mis/dataset.json ] || python3 benchmarks/scripts/pack_dataset.py unpack .pack/acdc_ssl4mis.npz.xz \
        data/acdc_ssl4mis || exit 1
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
      python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
      lscpu | grep 'Model name'; } | tee "$out/gpu.txt"
    echo "set-up $(( $(date +%s) - t0 )) s"
}

if [ "$action" = throughput ]; then
    setup
    timeout 150 python3 benchmarks/scripts/throughput.py data/acdc_ssl4mis --size 256 --batch 24 --steps 30 --workers 8 \
        --compile on --out "$out" 2>&1 | tr '\r' '\n' | grep -v "it/s\|case/s\|^\s*$" | tail -40
    exit 0
fi

if [ "$action" = profile ]; then  # where a GPU step's time goes: wall against device-busy time, eager and graphed
    setup
    for method in ideal-pretrain ideal; do
        for mode in off cudagraphs; do
            timeout 150 python3 benchmarks/scripts/throughput.py data/acdc_ssl4mis --size 256 --batch 24 --profile 30 \
                --method "$method" --amp --compile "$mode" --out "$out" 2>&1 | grep -A2 "^$method, " | head -3
        done
    done
    exit 0
fi

if [ "$action" = start ]; then
    setup
    timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_device_waits.py -rs 2>&1 | tail -15
    echo "GPU tests done at $(( $(date +%s) - t0 )) s"
    export -f protocol; export logs
    setsid nohup bash -c protocol > /dev/null 2>&1 < /dev/null &
    sleep 20  # started before the wait below looks for it
fi

while [ $(( $(date +%s) - t0 )) -lt "$seconds" ] && pgrep -f "idealseg benchmark" > /dev/null; do
    sleep 10
done
for name in ideal supervised; do
    echo "=== $name, $(( $(date +%s) - t0 )) s ==="
    tr '\r' '\n' < "$logs/$name.log" 2>/dev/null | grep -v "^\s*$\|case/s" | awk '/it\/s/ {last=$0; next} {print} END {print last}' | tail -25
done
cp "$logs/wall.txt" "$out/" 2>/dev/null
tar -czf "$out/acdc_gpu.tgz" --exclude='*.pt' /tmp/acdc_gpu "$logs"/*.log 2>/dev/null
ls -la "$out"

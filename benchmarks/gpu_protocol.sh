#!/usr/bin/env bash
# One 15-minute GPU lease spent on the gpu protocol (METHOD.md section 7: 256 x 256, batch 12 + 12,
# IDEAL 11k pre-training + 30k fine-tuning steps, supervised 30k steps) at 7 labelled patients, with
# the networks compiled (option `compile`, auto = on CUDA), plus the throughput run. The lent machine
# reaches nothing outside it, so the dataset travels packed (benchmarks/pack_dataset.py, 52 MiB) and
# MONAI and nibabel as wheels:
#   python benchmarks/pack_dataset.py pack data/acdc_ssl4mis .pack/acdc_ssl4mis.npz.xz
#   pip download --no-deps ... -d .whl monai==1.6.1 nibabel==5.4.2   (see the device tool's notes)
# Then, through the device tool, carrying .pack and .whl:
#   bash benchmarks/gpu_protocol.sh start "$OUT" 480   # set-up, throughput, both protocols launched;
#                                                      # waits until 480 s after its start, then collects
#   bash benchmarks/gpu_protocol.sh collect "$OUT" 180 # on the same warm machine: waits up to 180 s more
# Both protocol runs train side by side on the one GPU (each step is launch-bound, the GPU mostly
# idle), detached from the call (setsid), so that they go on between calls; `collect` packs what they
# have written (logs, summaries, evaluations; no checkpoints) into $OUT/acdc_gpu.tgz.
set -uo pipefail
action=${1:?usage: gpu_protocol.sh start|collect OUT SECONDS}
out=${2:?OUT}
seconds=${3:?SECONDS}
t0=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/src
logs=/tmp/protocol
mkdir -p "$out" "$logs"

protocol() {  # one method's cells; compile falls back to off if the compiled run fails
    local name=$1
    python3 -m idealseg benchmark benchmarks/acdc_gpu.yaml --only "$name" --seeds 0 --labeled ssl4mis:7 \
        > "$logs/$name.log" 2>&1 && return
    echo "=== $name failed with compile on; again with compile off ===" >> "$logs/$name.log"
    sed 's/^split: val$/split: val\noptions: {compile: "off"}/' benchmarks/acdc_gpu.yaml > "$logs/nocompile.yaml"
    python3 -m idealseg benchmark "$logs/nocompile.yaml" --only "$name" --seeds 0 --labeled ssl4mis:7 \
        >> "$logs/$name.log" 2>&1
}

if [ "$action" = start ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    [ -f data/acdc_ssl4mis/dataset.json ] || python3 benchmarks/pack_dataset.py unpack .pack/acdc_ssl4mis.npz.xz \
        data/acdc_ssl4mis || exit 1
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
      python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
      lscpu | grep 'Model name'; } | tee "$out/gpu.txt"
    echo "set-up $(( $(date +%s) - t0 )) s"
    timeout 150 python3 benchmarks/throughput.py data/acdc_ssl4mis --size 256 --batch 24 --steps 30 --workers 8 \
        --compile on --out "$out" 2>&1 | tr '\r' '\n' | grep -v "it/s\|case/s\|^\s*$" | tail -40
    echo "throughput done at $(( $(date +%s) - t0 )) s"
    export -f protocol; export logs
    for name in ideal supervised; do
        setsid nohup bash -c "protocol $name" > /dev/null 2>&1 < /dev/null &
    done
    sleep 20  # both started before the wait below looks for them
fi

while [ $(( $(date +%s) - t0 )) -lt "$seconds" ] && pgrep -f "idealseg benchmark" > /dev/null; do
    sleep 10
done
for name in ideal supervised; do
    echo "=== $name, $(( $(date +%s) - t0 )) s ==="
    tr '\r' '\n' < "$logs/$name.log" 2>/dev/null | grep -v "^\s*$\|case/s" | awk '/it\/s/ {last=$0; next} {print} END {print last}' | tail -25
done
tar -czf "$out/acdc_gpu.tgz" --exclude='*.pt' benchmarks/results/acdc_gpu "$logs"/*.log 2>/dev/null
ls -la "$out"

#!/usr/bin/env bash
# Robustness to framing, before and after physical space: two supervised U-Nets trained on
# ACDC as released (NIfTI with spacing), the SSL4MIS split's 7 labelled patients, the cpu profile and
# the same number of steps, one on slices resized to 128 px (target_spacing none: what idealseg did
# before) and one at the median in-plane spacing (auto: 1.48 mm), each scored by robustness.py on the
# validation volumes re-framed seven ways, as segmented and with each class's largest connected
# component kept. SGD 0.01, the cpu profile's optimiser when these ran, pinned. Resumable: rerun after an interruption.
#
#   bash benchmarks/scripts/robustness.sh [ACDC_NIFTI] [SSL4MIS_ACDC]    (defaults: ../shared/data/...)
set -euo pipefail
NIFTI=${1:-../shared/data/acdc-nifti}
LISTS=${2:-../shared/data/acdc}
RUNS=${RUNS:-runs/robustness}
STEPS=${STEPS:-2000}
mkdir -p "$RUNS"
sed 's/_frame.*//' "$LISTS/val.list" | sort -u > "$RUNS/val_patients.txt"
[ -f data/acdc_nifti/dataset.json ] || idealseg prepare acdc "$NIFTI" data/acdc_nifti \
    --val "@$RUNS/val_patients.txt" --test 0 --normalize minmax
for spacing in none auto; do
    run="$RUNS/supervised_$spacing"
    resume=""
    [ -f "$run/config.yaml" ] && resume="--resume"
    [ -f "$run/summary.json" ] || idealseg finetune data/acdc_nifti --out "$run" $resume --method supervised \
        --profile cpu --labeled @benchmarks/configs/acdc_ssl4mis7_patients.txt --iterations "$STEPS" --time-budget 0 \
        --amp false --optimizer sgd --lr 0.01 --val-every 500 --target-spacing "$spacing"
    python benchmarks/scripts/robustness.py "$run" "$NIFTI" --val-list "$LISTS/val.list" \
        --out "benchmarks/results/robustness/supervised_acdc_nifti7_spacing_$spacing"
    python benchmarks/scripts/robustness.py "$run" "$NIFTI" --val-list "$LISTS/val.list" --largest-component \
        --out "benchmarks/results/robustness/supervised_acdc_nifti7_spacing_${spacing}_lcc"
done

#!/usr/bin/env bash
# What each quantization setting costs a model: mean KL and greedy agreement
# against the unquantized model (tests/quant_quality.py) and the size, for
# nf4 and int8 at blocks 32/64/128, with and without double quant. The
# figures behind docs/quantization.md's "Choosing a type and block size".
#
#   scripts/quant_matrix.sh BUILD_DIR HF_DIR PROMPTS.json N [WORK_DIR]
#
# e.g. scripts/quant_matrix.sh build ../shared/models/stories260K \
#          ../shared/golden/stories260K.json 48
set -euo pipefail
build=${1:?usage: quant_matrix.sh BUILD_DIR HF_DIR PROMPTS.json N [WORK_DIR]}
hf=${2:?} prompts=${3:?} n=${4:?}
work=${5:-$(mktemp -d)}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
"$build/airllm-split" -q --force "$hf" "$work/ref"
ref_bytes=$(cat "$work"/ref/*.airc | wc -c)
printf '| type | block | double quant | unit files | bits/weight (quantized) | mean KL | greedy agreement |\n'
printf '|---|---|---|---|---|---|---|\n'
for ty in nf4 int8; do
    for b in 32 64 128; do
        for dq in "" --double-quant; do
            q="$work/q"
            "$build/airllm-quant" -q --force -t "$ty" -b "$b" $dq "$work/ref" "$q"
            bpw=$("$build/airllm-quant" --dry-run -t "$ty" -b "$b" $dq "$work/ref" "$work/dry" |
                sed -n 's/.*: \([0-9.]*\) bits per quantized weight.*/\1/p')
            bytes=$(cat "$q"/*.airc | wc -c)
            line=$(python3 "$root/tests/quant_quality.py" "$build/airllm-run" "$work/ref" "$q" \
                "$prompts" "$n" 100 0 | tail -n 1)
            kl=$(echo "$line" | sed -n 's/.*mean KL \([0-9.]*\) (max.*/\1/p')
            agree=$(echo "$line" | sed -n 's/.*greedy agreement \([0-9]*\/[0-9]*\) = \([0-9.]*\).*/\1 = \2/p')
            printf '| %s | %s | %s | %.1f%% | %s | %s | %s |\n' "$ty" "$b" "${dq:+yes}" \
                "$(echo "100 * $bytes / $ref_bytes" | bc -l)" "$bpw" "$kl" "$agree"
        done
    done
done

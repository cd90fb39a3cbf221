#!/usr/bin/env bash
# Input files that are not regular files: a FIFO given as a shard, the
# index, config.json, a tokenizer file, the manifest, a unit file or a
# --prompts file once blocked open() forever (nobody ever writes to it);
# /dev/zero or a directory in their place must be refused as well. Each
# tool must say "<path>: not a regular file" and exit 1, quickly: the
# timeout only turns a hang into a failure.
. "$(dirname "$0")/../testlib.sh"
: "${AIRLLM_RUN:?set AIRLLM_RUN to the airllm-run binary}"
: "${AIRLLM_QUANT:?set AIRLLM_QUANT to the airllm-quant binary}"
S=$SCRATCH
T=20

# fresh DIR SRC: a writable copy of a model directory
fresh() {
    rm -rf "$1" && cp -r "$2" "$1" && chmod -R u+w "$1"
}
# swap DIR NAME KIND: replaces DIR/NAME with a FIFO, /dev/zero or a directory
swap() {
    rm -rf "${1:?}/$2"
    case $3 in
    fifo) mkfifo "$1/$2" ;;
    zero) ln -s /dev/zero "$1/$2" ;;
    dir) mkdir "$1/$2" ;;
    esac
}

single="$MODELS/stories260K"
sharded="$MODELS/stories260K-bf16-sharded"

# ---- airllm-split: every input it opens ----
for c in "$single model.safetensors fifo" "$single model.safetensors zero" \
         "$single model.safetensors dir" "$single config.json fifo" \
         "$single config.json zero" "$single tokenizer.json fifo" \
         "$single tokenizer.model fifo" "$single generation_config.json fifo" \
         "$sharded model.safetensors.index.json fifo" \
         "$sharded model-00002-of-00003.safetensors fifo" \
         "$sharded model-00001-of-00003.safetensors zero"; do
    set -- $c
    fresh "$S/in" "$1"
    swap "$S/in" "$2" "$3"
    rm -rf "$S/out"
    run 1 "split: $2 as $3 is refused" timeout $T "$AIRLLM_SPLIT" -q "$S/in" "$S/out"
    expect_err "$S/in/$2: not a regular file" "split: $2 as $3: named, and why"
    case $2 in
    tokenizer* | generation*) ;; # copied files: a dry run does not read them
    *)
        rm -rf "$S/out"
        run 1 "split --dry-run: $2 as $3 is refused" timeout $T "$AIRLLM_SPLIT" -n "$S/in" "$S/out"
        ;;
    esac
done

# ---- airllm-verify: the manifest, a unit file, a copied file, the source ----
"$AIRLLM_SPLIT" -q "$single" "$S/conv" || bad "split of the fixture"

# ---- airllm-quant: a checkpoint's shard, a converted directory's unit file ----
fresh "$S/in" "$single"
swap "$S/in" model.safetensors fifo
rm -rf "$S/out"
run 1 "quant: a FIFO shard is refused" timeout $T "$AIRLLM_QUANT" -q "$S/in" "$S/out"
expect_err "$S/in/model.safetensors: not a regular file" "quant: FIFO shard: named, and why"
fresh "$S/in" "$S/conv"
swap "$S/in" manifest.json fifo
rm -rf "$S/out"
run 1 "quant: a FIFO manifest in a converted input is refused" \
    timeout $T "$AIRLLM_QUANT" -q "$S/in" "$S/out"
expect_err "$S/in/manifest.json: not a regular file" "quant: FIFO manifest: named, and why"
for c in "manifest.json fifo" "layer.00000.airc fifo" "layer.00001.airc zero" \
         "tokenizer.json fifo" "config.json fifo"; do
    set -- $c
    fresh "$S/v" "$S/conv"
    swap "$S/v" "$1" "$2"
    run 1 "verify: $1 as $2 is reported" timeout $T "$AIRLLM_VERIFY" "$S/v"
    # listed files are reported by their size (0) before they are opened
    case $1 in
    *.json) [ "$1" = tokenizer.json ] || expect_err "not a regular file" "verify: $1 as $2: says why" ;;
    esac
done
fresh "$S/src" "$single"
swap "$S/src" model.safetensors fifo
run 1 "verify --against: a FIFO source is refused" \
    timeout $T "$AIRLLM_VERIFY" --against "$S/src" "$S/conv"
expect_err "$S/src/model.safetensors: not a regular file" "verify --against: says why"

# ---- airllm-run: manifest, config, tokenizer, unit files, --prompts ----
for c in "manifest.json fifo" "config.json fifo" "config.json zero" "tokenizer.json fifo"; do
    set -- $c
    fresh "$S/r" "$S/conv"
    swap "$S/r" "$1" "$2"
    run 1 "run: $1 as $2 is refused" timeout $T "$AIRLLM_RUN" -q -p "Once" -n 2 "$S/r"
    expect_err "$S/r/$1: not a regular file" "run: $1 as $2: named, and why"
done
fresh "$S/r" "$S/conv"
swap "$S/r" layer.00000.airc fifo
run 1 "run: a FIFO unit file is refused" timeout $T "$AIRLLM_RUN" -q --ids 1,2 -n 2 "$S/r"
fresh "$S/r" "$S/conv"
mkfifo "$S/prompts.fifo"
run 1 "run: a FIFO --prompts file is refused" \
    timeout $T "$AIRLLM_RUN" -q --prompts "$S/prompts.fifo" -n 2 "$S/r"
expect_err "$S/prompts.fifo: not a regular file" "run --prompts FIFO: named, and why"
run 1 "run: /dev/zero as --prompts is refused" \
    timeout $T "$AIRLLM_RUN" -q --prompts /dev/zero -n 2 "$S/r"
expect_err "/dev/zero: not a regular file" "run --prompts /dev/zero: named, and why"
run 1 "run: a directory as --prompts is refused" \
    timeout $T "$AIRLLM_RUN" -q --prompts "$S" -n 2 "$S/r"
expect_err "$S: not a regular file" "run --prompts DIR: named, and why"
# and a regular model still runs
run 0 "run: the untouched copy still runs" timeout $T "$AIRLLM_RUN" -q --ids 1,2 -n 2 "$S/r"
finish

#!/usr/bin/env bash
# The command-line contract: exit codes (0 ok, 1 failure, 2 usage), --help
# and --version on stdout, --force, refusals that protect data, and no
# progress bar when stderr is not a terminal.
. "$(dirname "$0")/testlib.sh"

src="$MODELS/stories260K"
for tool in "$AIRLLM_SPLIT" "$AIRLLM_VERIFY"; do
    name=$(basename "$tool")
    run 0 "$name --help exits 0" "$tool" --help
    grep -q "Usage: $name" "$SCRATCH/last.out" && ok "$name --help prints usage on stdout" || bad "$name --help output"
    run 0 "$name --version exits 0" "$tool" --version
    grep -q "^$name [0-9]" "$SCRATCH/last.out" && ok "$name --version prints the version" || bad "$name --version output"
    run 2 "$name with a bad option exits 2" "$tool" --no-such-option
    run 2 "$name with missing arguments exits 2" "$tool"
    run 2 "$name with a bad --jobs exits 2" "$tool" --jobs 0 a b
done
run 2 "split with a bad --compress exits 2" "$AIRLLM_SPLIT" --compress lz4 "$src" "$SCRATCH/x"
run 2 "split with a bad zstd level exits 2" "$AIRLLM_SPLIT" --compress zstd:99 "$src" "$SCRATCH/x"

out="$SCRATCH/out"
run 0 "split" "$AIRLLM_SPLIT" "$src" "$out"
[ ! -s "$SCRATCH/last.out" ] && ok "nothing on stdout without --json" || bad "stdout: $(head -c 200 "$SCRATCH/last.out")"
grep -q $'\r' "$SCRATCH/last.err" && bad "progress bar drawn on a non-terminal" || ok "no progress bar when stderr is not a terminal"
if command -v script >/dev/null; then
    # script(1) gives the tool a terminal: now the progress bar must appear.
    script -qec "\"$AIRLLM_SPLIT\" \"$src\" \"$SCRATCH/tty\"" /dev/null >"$SCRATCH/tty.log" 2>&1
    grep -q "airllm-split: 100.0%" "$SCRATCH/tty.log" && ok "progress bar (percent, bytes, rate, ETA) on a terminal" ||
        bad "no progress bar on a terminal: $(head -c 300 "$SCRATCH/tty.log")"
else
    echo "SKIP: script(1) not installed: progress bar on a terminal not exercised"
fi
run 0 "rerunning a finished command is a no-op" "$AIRLLM_SPLIT" "$src" "$out"
expect_err "already complete" "says it is already complete"
run 1 "other options into a finished OUT_DIR are refused" "$AIRLLM_SPLIT" --compress zstd "$src" "$out"
expect_err "use --force" "refusal suggests --force"
run 0 "--force replaces it" "$AIRLLM_SPLIT" -q --force --compress zstd "$src" "$out"
run 0 "replaced output verifies" "$AIRLLM_VERIFY" --against "$src" "$out"

mkdir -p "$SCRATCH/busy" && echo precious > "$SCRATCH/busy/notes.txt"
run 1 "a non-empty foreign OUT_DIR is refused" "$AIRLLM_SPLIT" "$src" "$SCRATCH/busy"
[ "$(cat "$SCRATCH/busy/notes.txt")" = precious ] && ok "the foreign file is untouched" || bad "foreign file changed"
mkdir -p "$SCRATCH/busy/sub"
run 1 "--force refuses to remove a subdirectory" "$AIRLLM_SPLIT" --force "$src" "$SCRATCH/busy"
expect_err "not a regular file" "says why"

cp -a "$src" "$SCRATCH/hf"
before=$(tree_digest "$SCRATCH/hf")
run 1 "OUT_DIR equal to HF_DIR is refused" "$AIRLLM_SPLIT" --force "$SCRATCH/hf" "$SCRATCH/hf"
[ "$before" = "$(tree_digest "$SCRATCH/hf")" ] && ok "source untouched" || bad "source changed"
run 1 "--json error" "$AIRLLM_SPLIT" --json "$SCRATCH/nonexistent" "$SCRATCH/y"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["status"]=="error" and "nonexistent" in d["error"]' "$SCRATCH/last.out" &&
    ok "--json reports the error on stdout" || bad "--json error output: $(cat "$SCRATCH/last.out")"

run 0 "--delete-original" "$AIRLLM_SPLIT" -q --delete-original "$SCRATCH/hf" "$SCRATCH/del"
run 0 "output of --delete-original verifies" "$AIRLLM_VERIFY" --against "$src" "$SCRATCH/del"
left=$(ls -A "$SCRATCH/hf")
[ -z "$left" ] && ok "--delete-original removed every converted file" || bad "left in HF_DIR: $left"
run 0 "verify --quick" "$AIRLLM_VERIFY" --quick "$SCRATCH/del"
run 0 "an OUT_DIR with missing parents is created" "$AIRLLM_SPLIT" -q "$src" "$SCRATCH/new/a/b"
run 0 "and verifies" "$AIRLLM_VERIFY" "$SCRATCH/new/a/b"
run 1 "verify of a missing directory" "$AIRLLM_VERIFY" "$SCRATCH/nope"
finish

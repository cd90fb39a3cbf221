#!/usr/bin/env bash
# A three-turn airllm-run -i chat with SmolLM2-135M-Instruct (converted by
# airllm-split from scripts/fetch_smollm2.sh's cached checkpoint), checked by
# tests/chat_session.py: answers 2 and 3 must equal single-shot --messages
# runs of the conversation, with the KV cache kept between turns, resident
# and streamed (--mem-budget 0). Too slow for ctest on a shared CPU; the
# same check runs on stories260K in tests/chat.sh.
#
#   scripts/demo_chat.sh [BUILD_DIR] [N_NEW]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build}
n=${2:-32}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
smol=$("$root/scripts/fetch_smollm2.sh" | tail -n 1)
"$bin/airllm-split" -q "$smol" "$work/smol"
for extra in "" "--mem-budget 0"; do
    echo "== airllm-run -i ${extra:-(resident)} $work/smol: 3 turns, $n new tokens each"
    CHAT_INTERRUPT=1 python3 "$root/tests/chat_session.py" "$bin/airllm-run" "$work/smol" "$n" $extra
done
echo "== a session as typed:"
printf 'What is the capital of France?\nAnd of Italy?\nWhich of the two is bigger?\n' |
    "$bin/airllm-run" -q -i --json -n "$n" "$work/smol" |
    python3 -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    if d["type"] != "result":  # the summary line at the end
        continue
    print("[%d] (%d of %d prompt tokens prefilled) %s"
          % (d["turn"], d["prefilled_tokens"], d["prompt_tokens"], d["text"]))'

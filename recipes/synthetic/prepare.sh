#!/usr/bin/env bash
# Synthetic TTS corpus (no download) -> data/synthetic/{train,dev,test}.jsonl
# Usage: recipes/synthetic/prepare.sh [TEXT_FILE] [--stage N] [--stop-stage M]
#   TEXT_FILE  sentences, one a line (default ../shared/data/text/ljspeech-sentences.txt when it
#              exists, else the package's 420 built-in sentences)
#   NUM_UTTS   utterances to synthesize (default 6000: 9.4 h of speech, 1 min 45 s on 2 cores)
# Test voices and 10% of the sentences are held out of training.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
out=$ROOT/data/synthetic
text=${ARGS[0]:-$ROOT/../shared/data/text/ljspeech-sentences.txt}
if [ ! -f "$text" ]; then
    if [ -n "${ARGS[0]:-}" ]; then
        echo "recipes/synthetic/prepare.sh: $text: no such text file" >&2; exit 2
    fi
    text=""   # no ../shared: the built-in sentences
fi
text_args=()
[ -n "$text" ] && text_args=(--text "$text")

if run_stage 0; then
    log "stage 0: synthesize ${NUM_UTTS:-6000} utterances from ${text:-the built-in text}"
    "$BIN/asr-data" synth "${text_args[@]}" --out "$out" --num-utts "${NUM_UTTS:-6000}" --seed 0
    "$BIN/asr-data" stats "$out"/{train,dev,test}.jsonl
fi

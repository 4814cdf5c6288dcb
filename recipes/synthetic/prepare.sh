#!/usr/bin/env bash
# Synthetic TTS corpus (no download) -> data/synthetic/{train,dev,test}.jsonl
# Usage: recipes/synthetic/prepare.sh [TEXT_FILE] [--stage N] [--stop-stage M]
# Default text: the package's built-in sentences. Test voices are held out of training.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
out=$ROOT/data/synthetic
text_args=()
[ ${#ARGS[@]} -gt 0 ] && text_args=(--text "${ARGS[0]}")

if run_stage 0; then
    log "stage 0: synthesize 1000 utterances"
    "$BIN/asr-data" synth "${text_args[@]}" --out "$out" --num-utts "${NUM_UTTS:-1000}" --seed 0
    "$BIN/asr-data" stats "$out"/{train,dev,test}.jsonl
fi

#!/usr/bin/env bash
# Free Spoken Digit Dataset -> data/fsdd/{all,train,dev,test}.jsonl
# Usage: recipes/fsdd/prepare.sh [CORPUS_DIR] [--stage N] [--stop-stage M]
# Split: takes 0-4 are the customary test set; takes 5-9 are dev; the rest train.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
corpus=${ARGS[0]:-$ROOT/../shared/data/fsdd}
out=$ROOT/data/fsdd

if run_stage 0; then
    log "stage 0: import $corpus"
    "$BIN/asr-data" import "$corpus" --format fsdd --out "$out/all.jsonl"
fi
if run_stage 1; then
    log "stage 1: split by take (test 0-4, dev 5-9)"
    "$BIN/asr-data" split "$out/all.jsonl" --out-dir "$out" --test-where take=0-4 \
        --dev-where take=5-9
    "$BIN/asr-data" stats "$out"/{train,dev,test}.jsonl
fi

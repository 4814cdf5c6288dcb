#!/usr/bin/env bash
# speechocean762 training split (Kaldi data dir) -> data/speechocean762/{all,train,dev}.jsonl
# Usage: recipes/speechocean762/prepare.sh [CORPUS_DIR] [--stage N] [--stop-stage M]
# Dev: 10% of the utterances, whole speakers held out (speaker-disjoint). The corpus' own test
# split is not used here: the project is judged on it.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
corpus=${ARGS[0]:-$ROOT/../shared/data/speechocean762}
out=$ROOT/data/speechocean762

if run_stage 0; then
    log "stage 0: import $corpus/train"
    "$BIN/asr-data" import "$corpus/train" --format kaldi --out "$out/all.jsonl"
fi
if run_stage 1; then
    log "stage 1: speaker-disjoint split (dev 10%)"
    "$BIN/asr-data" split "$out/all.jsonl" --out-dir "$out" --dev 0.1 --test 0 --seed 0
    "$BIN/asr-data" stats "$out"/{train,dev}.jsonl
fi

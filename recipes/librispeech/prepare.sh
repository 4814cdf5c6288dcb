#!/usr/bin/env bash
# LibriSpeech -> data/librispeech/{train,dev,test}.jsonl, for users who have the corpus.
# Usage: recipes/librispeech/prepare.sh LIBRISPEECH_DIR [--stage N] [--stop-stage M]
# LIBRISPEECH_DIR holds train-clean-100/, dev-clean/ and test-clean/ (the official splits,
# already speaker-disjoint). Not runnable on the development machine: the corpus is not there.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
corpus=${ARGS[0]:-$ROOT/../shared/data/librispeech}
out=$ROOT/data/librispeech

if run_stage 0; then
    for pair in train:train-clean-100 dev:dev-clean test:test-clean; do
        name=${pair%%:*}; part=${pair#*:}
        log "stage 0: import $corpus/$part"
        "$BIN/asr-data" import "$corpus/$part" --format librispeech --out "$out/$name.jsonl"
    done
    "$BIN/asr-data" stats "$out"/{train,dev,test}.jsonl
fi

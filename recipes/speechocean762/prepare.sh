#!/usr/bin/env bash
# speechocean762 training split (Kaldi data dir) -> data/speechocean762/{all,train,dev}.jsonl
# Usage: recipes/speechocean762/prepare.sh [CORPUS_DIR] [--stage N] [--stop-stage M]
# Dev: 10% of the utterances, whole speakers held out (speaker-disjoint). The corpus' own test
# split is not used here: the project is judged on it.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
import_and_split "${ARGS[0]:-$ROOT/../shared/data/speechocean762}/train" kaldi \
    "$ROOT/data/speechocean762" --dev 0.1 --test 0 --seed 0

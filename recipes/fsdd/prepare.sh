#!/usr/bin/env bash
# Free Spoken Digit Dataset -> data/fsdd/{all,train,dev,test}.jsonl
# Usage: recipes/fsdd/prepare.sh [CORPUS_DIR] [--stage N] [--stop-stage M]
# Split: takes 0-4 are the customary test set; takes 5-9 are dev; the rest train.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
import_and_split "${ARGS[0]:-$ROOT/../shared/data/fsdd}" fsdd "$ROOT/data/fsdd" \
    --test-where take=0-4 --dev-where take=5-9

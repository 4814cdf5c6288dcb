#!/usr/bin/env bash
# synthetic recipe: prepare the data, train the LSTM and the WaveNet, evaluate.
# Usage: recipes/synthetic/run.sh [TEXT_FILE] [--stage N] [--stop-stage M]
# Leaves exp/synthetic_lstm/model.ckpt and exp/synthetic_wavenet/model.ckpt with metrics.json
# (dev and, where the corpus has one, test WER/CER of the best checkpoint) beside them.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"

prepare_and_train synthetic

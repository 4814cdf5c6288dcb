#!/usr/bin/env bash
# synthetic recipe: prepare the data, train the LSTM and the WaveNet, evaluate.
# Usage: recipes/synthetic/run.sh [TEXT_FILE] [--stage N] [--stop-stage M]
# Leaves exp/synthetic_lstm/model.ckpt and exp/synthetic_wavenet/model.ckpt with metrics.json
# (dev and, where the corpus has one, test WER/CER of the best checkpoint) beside them.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"

if run_stage 0; then
    bash "$(dirname "$0")/prepare.sh" ${ARGS[0]:+"${ARGS[0]}"}
fi
if run_stage 1; then
    train_model synthetic_lstm
fi
if run_stage 2; then
    train_model synthetic_wavenet
fi

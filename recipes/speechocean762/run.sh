#!/usr/bin/env bash
# speechocean762 recipe: prepare the data, train the LSTM and the WaveNet, evaluate.
# Usage: recipes/speechocean762/run.sh [CORPUS_DIR] [--stage N] [--stop-stage M]
# Leaves exp/speechocean762_lstm/model.ckpt and exp/speechocean762_wavenet/model.ckpt with metrics.json
# (dev and, where the corpus has one, test WER/CER of the best checkpoint) beside them.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"

if run_stage 0; then
    bash "$(dirname "$0")/prepare.sh" ${ARGS[0]:+"${ARGS[0]}"}
fi
if run_stage 1; then
    train_model speechocean762_lstm
fi
if run_stage 2; then
    train_model speechocean762_wavenet
fi

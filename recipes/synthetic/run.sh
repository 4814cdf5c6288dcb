#!/usr/bin/env bash
# synthetic recipe: prepare the data, train the LSTM and the WaveNet, compress, evaluate.
# Usage: recipes/synthetic/run.sh [TEXT_FILE] [--stage N] [--stop-stage M]
# Leaves exp/synthetic_lstm/model.ckpt and exp/synthetic_wavenet/model.ckpt with metrics.json
# (dev and, where the corpus has one, test WER/CER of the best checkpoint) beside them; stage 3
# compresses both with the ese and bbs presets (ese.model, bbs.model, with their storage tables
# and dev WER; 4 fine-tuning epochs at lr 2e-3 unless COMPRESS_EPOCHS / COMPRESS_LR say
# otherwise) and stage 4 evaluates the float and compressed models on the test voices
# (eval_test/, eval_test_ese/, eval_test_bbs/; greedy, as the target in docs/results.md).
source "$(dirname "$0")/../common.sh"
parse_stages "$@"

prepare_and_train synthetic
if run_stage 3; then
    # 4 epochs (the LSTM takes 17-20 min a preset on 2 cores) at the rate of the other recipes'
    # compression stages; docs/results.md has what that costs against float.
    export COMPRESS_EPOCHS=${COMPRESS_EPOCHS:-4} COMPRESS_LR=${COMPRESS_LR:-2e-3}
    compress_run synthetic synthetic_lstm
    compress_run synthetic synthetic_wavenet
fi
if run_stage 4 && [ -s "$ROOT/data/synthetic/test.jsonl" ]; then
    for model in synthetic_lstm synthetic_wavenet; do
        evaluate_artifacts "$ROOT/data/synthetic/test.jsonl" "$model" --decoder greedy
    done
fi

#!/usr/bin/env bash
# fsdd recipe: prepare the data, train the LSTM and the WaveNet, evaluate.
# Usage: recipes/fsdd/run.sh [CORPUS_DIR] [--stage N] [--stop-stage M]
# Leaves exp/fsdd_lstm/model.ckpt and exp/fsdd_wavenet/model.ckpt with metrics.json
# (dev and test WER/CER of the best checkpoint) and eval_test/ (greedy against closed-vocabulary
# beam search over the ten digit words) beside them; stage 4 compresses both with the ese and
# bbs presets (ese.model, bbs.model, with their storage tables and dev WER; 30 fine-tuning epochs
# at lr 2e-3 unless COMPRESS_EPOCHS / COMPRESS_LR say otherwise) and stage 5
# evaluates the compressed models on the test takes (eval_test_ese/, eval_test_bbs/).
# Stage 6 trains the delta LSTM (experiment=fsdd_delta_lstm: fsdd_lstm's sizes and schedule);
# stage 7 adds its delta point to a report (exp/fsdd_delta_lstm/report): float, spartus-
# compressed (column-balanced to 12.5% over the 8 PEs of the delta engine resized to 8; 30
# fine-tuning epochs as stage 4, keeping the last) and on the engine, with the temporal
# sparsity it measured and the distribution of cycles per frame.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"

# evaluate_test RUN FILE: greedy and closed-vocabulary beam search on the test takes.
evaluate_test() {
    evaluate_artifact "$ROOT/data/fsdd/test.jsonl" "$1" "$2" --decoder greedy,beam \
        --words "$(dirname "$0")/digits.txt"
}

prepare_and_train fsdd
for model in fsdd_lstm fsdd_wavenet; do
    if run_stage 3; then
        evaluate_test "$model" model.ckpt
    fi
done
if run_stage 4; then
    # 30 epochs near the float training's rate: the LSTM's ese/bbs land within 1 WER point of
    # float there, against 2-4 points at asr-compress's default 3e-4 (docs/results.md).
    export COMPRESS_EPOCHS=${COMPRESS_EPOCHS:-30} COMPRESS_LR=${COMPRESS_LR:-2e-3}
    # (Fine-tuning augments as each model trained: asr-compress reads it from the checkpoint.)
    compress_run fsdd fsdd_lstm data.batch.max_batch_size=16
    # The WaveNet's 1x1 input conv stays dense: its 20 MFCC columns do not split into bbs's
    # banks of 16, and asr-compress refuses a bank size that does not divide a row.
    compress_run fsdd fsdd_wavenet data.batch.max_batch_size=16 "+compress.prune.targets.conv_in=1.0"
fi
for model in fsdd_lstm fsdd_wavenet; do
    for preset in ese bbs; do
        if run_stage 5; then
            evaluate_test "$model" "$preset.model"
        fi
    done
done
if run_stage 6; then
    train_model fsdd_delta_lstm
fi
if run_stage 7; then
    # 30 epochs, keeping the last: 10 keeping the best on dev left it 4.3 points behind the plain
    # LSTM on test, 30 keep it within 0.7 (docs/results.md).
    delta_point fsdd exp/fsdd_delta_lstm/model.ckpt exp/fsdd_delta_lstm/report 0.125 \
        finetune.max_epochs=${COMPRESS_EPOCHS:-30} finetune.lr=${COMPRESS_LR:-2e-3} \
        finetune.keep=last data.batch.max_batch_size=16
fi

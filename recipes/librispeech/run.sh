#!/usr/bin/env bash
# librispeech recipe, for users who have the corpus (not run on the development machine):
# import train-clean-100 / dev-clean / test-clean, train ESE's LSTM and the seed WaveNet on a
# GPU, compress both with the ese and bbs presets, evaluate on test-clean.
# Usage: recipes/librispeech/run.sh [LIBRISPEECH_DIR] [--stage N] [--stop-stage M]
#   LIBRISPEECH_DIR  holds train-clean-100/, dev-clean/, test-clean/ (default
#                    ../shared/data/librispeech)
#   TRAIN_ARGS, COMPRESS_ARGS  extra Hydra overrides of asr-train / asr-compress, e.g.
#                    TRAIN_ARGS="trainer=cpu model=lstm_medium" without a GPU
#   COMPRESS_EPOCHS, COMPRESS_LR  the compression fine-tuning (default 4 epochs at 1e-3)
# Stages: 0 import (prepare.sh), 1 asr-train experiment=librispeech_lstm, 2 experiment=
# librispeech_wavenet, 3 compress each into ese.model and bbs.model, 4 evaluate the float and
# compressed models on test-clean (greedy and beam search) into exp/librispeech_<model>/eval_test*/.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"

prepare_and_train librispeech
if run_stage 3; then
    export COMPRESS_EPOCHS=${COMPRESS_EPOCHS:-4} COMPRESS_LR=${COMPRESS_LR:-1e-3}
    compress_run librispeech librispeech_lstm
    compress_run librispeech librispeech_wavenet
fi
if run_stage 4; then
    for model in librispeech_lstm librispeech_wavenet; do
        evaluate_artifacts "$ROOT/data/librispeech/test.jsonl" "$model" --decoder greedy,beam
    done
fi

#!/usr/bin/env bash
# speechocean762 recipe: prepare the data, train the LSTM and the WaveNet, build and tune a word
# 3-gram LM, evaluate greedy against beam search with the LM on the held-out dev speakers.
# Usage: recipes/speechocean762/run.sh [CORPUS_DIR] [--stage N] [--stop-stage M]
#   LM_TEXT=FILE  extra LM text, one sentence a line (default
#                 ../shared/data/text/ljspeech-sentences.txt); the training transcripts are
#                 always included.
# Leaves exp/speechocean762_{lstm,wavenet}/model.ckpt, metrics.json and eval_dev/, and
# exp/lm/speechocean762_3gram.arpa with the tuned weights in exp/lm/speechocean762_params.json.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
lm_text=${LM_TEXT:-$ROOT/../shared/data/text/ljspeech-sentences.txt}
lm=$ROOT/exp/lm/speechocean762_3gram.arpa
params=$ROOT/exp/lm/speechocean762_params.json

prepare_and_train speechocean762
if run_stage 3; then
    log "stage 3: 3-gram LM from $lm_text and the training transcripts"
    texts=("$ROOT/data/speechocean762/train.jsonl")
    [ -f "$lm_text" ] && texts+=("$lm_text")
    "$BIN/asr-lm" build "${texts[@]}" --order 3 --out "$lm"
fi
if run_stage 4; then
    log "stage 4: tune alpha/beta of the LSTM's beam search on dev"
    "$BIN/asr-lm" tune "$ROOT/exp/speechocean762_lstm/model.ckpt" \
        "$ROOT/data/speechocean762/dev.jsonl" --lm "$lm" --grid 4 --alpha-range 0,1.5 \
        --beta-range 0,3 --max-utterances 100 --out "$params"
fi
if run_stage 5; then
    for model in speechocean762_lstm speechocean762_wavenet; do
        [ -f "$ROOT/exp/$model/model.ckpt" ] || continue
        log "evaluating $model on dev: greedy and beam search with the LM"
        "$BIN/asr-eval" "$ROOT/exp/$model/model.ckpt" "$ROOT/data/speechocean762/dev.jsonl" \
            --decoder greedy,beam --lm-params "$params" --out "$ROOT/exp/$model/eval_dev"
    done
fi

#!/usr/bin/env bash
# speechocean762 recipe: prepare the data, train the LSTM and the WaveNet, build and tune a word
# 3-gram LM, evaluate greedy against beam search with the LM on the held-out dev speakers.
# Usage: recipes/speechocean762/run.sh [CORPUS_DIR] [--stage N] [--stop-stage M]
#   LM_TEXT=FILE  extra LM text, one sentence a line (default
#                 ../shared/data/text/ljspeech-sentences.txt); the training transcripts are
#                 always included.
# Leaves exp/speechocean762_{lstm,wavenet}/model.ckpt, metrics.json and eval_dev/, and
# exp/lm/speechocean762_3gram.arpa with the tuned weights in exp/lm/speechocean762_params.json.
# Stage 6 fine-tunes the synthetic recipe's LSTM instead (exp/synthetic_lstm/model.ckpt, from
# recipes/synthetic/run.sh --stop-stage 1) into exp/speechocean762_lstm_pretrained/ and
# evaluates it as stages 4-5 do; stage 7 compresses every trained model (ese.model, bbs.model).
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
pretrained=speechocean762_lstm_pretrained
init=$ROOT/exp/synthetic_lstm/model.ckpt
if run_stage 6 && [ ! -f "$init" ]; then
    log "stage 6 skipped: it needs $init (recipes/synthetic/run.sh --stop-stage 1)"
elif run_stage 6; then
    train_model "$pretrained" "init_from=$init"
    log "stage 6: tune alpha/beta of $pretrained and evaluate it on dev"
    "$BIN/asr-lm" tune "$ROOT/exp/$pretrained/model.ckpt" "$ROOT/data/speechocean762/dev.jsonl" \
        --lm "$lm" --grid 4 --alpha-range 0,1.5 --beta-range 0,3 --max-utterances 100 \
        --out "$ROOT/exp/$pretrained/lm_params.json"
    "$BIN/asr-eval" "$ROOT/exp/$pretrained/model.ckpt" "$ROOT/data/speechocean762/dev.jsonl" \
        --decoder greedy,beam --lm-params "$ROOT/exp/$pretrained/lm_params.json" \
        --out "$ROOT/exp/$pretrained/eval_dev"
fi
if run_stage 7; then
    compress_models speechocean762
    compress_run speechocean762 "$pretrained"
fi

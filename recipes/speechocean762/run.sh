#!/usr/bin/env bash
# speechocean762 recipe: prepare the data, train the LSTM and the WaveNet, build and tune a word
# 3-gram LM, evaluate greedy against beam search with the LM on the held-out dev speakers.
# Usage: recipes/speechocean762/run.sh [CORPUS_DIR] [--stage N] [--stop-stage M]
#   LM_TEXT=FILE  extra LM text, one sentence a line (default
#                 ../shared/data/text/ljspeech-sentences.txt); the training transcripts are
#                 always included.
# Leaves exp/speechocean762_{lstm,wavenet}/model.ckpt, metrics.json, lm_params.json (the LM
# weights tuned for that model) and eval_dev/, and exp/lm/speechocean762_3gram.arpa.
# Stage 6 fine-tunes the synthetic recipe's models instead (exp/synthetic_{lstm,wavenet}/model.ckpt,
# from recipes/synthetic/run.sh) into exp/speechocean762_{lstm,wavenet}_pretrained/ and
# evaluates them as stages 4-5 do; stage 7 compresses every trained model (ese.model, bbs.model).
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
lm_text=${LM_TEXT:-$ROOT/../shared/data/text/ljspeech-sentences.txt}
lm=$ROOT/exp/lm/speechocean762_3gram.arpa

prepare_and_train speechocean762
if run_stage 3; then
    log "stage 3: 3-gram LM from $lm_text and the training transcripts"
    texts=("$ROOT/data/speechocean762/train.jsonl")
    [ -f "$lm_text" ] && texts+=("$lm_text")
    "$BIN/asr-lm" build "${texts[@]}" --order 3 --out "$lm"
fi
dev=$ROOT/data/speechocean762/dev.jsonl
# tune_lm RUN: alpha/beta of exp/RUN's beam search with the LM, on 100 dev utterances
# -> exp/RUN/lm_params.json.
tune_lm() {
    log "tuning alpha/beta of $1's beam search on dev"
    "$BIN/asr-lm" tune "$ROOT/exp/$1/model.ckpt" "$dev" --lm "$lm" --grid 4 \
        --alpha-range 0,1.5 --beta-range 0,3 --max-utterances 100 --out "$ROOT/exp/$1/lm_params.json"
}
# evaluate_dev RUN: greedy against beam search with the LM on dev -> exp/RUN/eval_dev.
evaluate_dev() {
    log "evaluating $1 on dev: greedy and beam search with the LM"
    "$BIN/asr-eval" "$ROOT/exp/$1/model.ckpt" "$dev" --decoder greedy,beam \
        --lm-params "$ROOT/exp/$1/lm_params.json" --out "$ROOT/exp/$1/eval_dev"
}
# speechocean762_blstm (asr-train experiment=speechocean762_blstm, not trained by this script: the
# bidirectional accuracy comparison) is tuned and evaluated too when it is there.
for model in speechocean762_lstm speechocean762_wavenet speechocean762_blstm; do
    [ -f "$ROOT/exp/$model/model.ckpt" ] || continue
    if run_stage 4; then tune_lm "$model"; fi
    if run_stage 5; then evaluate_dev "$model"; fi
done
for model in lstm wavenet; do
    pretrained=speechocean762_${model}_pretrained
    init=$ROOT/exp/synthetic_$model/model.ckpt
    if run_stage 6 && [ ! -f "$init" ]; then
        log "stage 6 skipped for $pretrained: it needs $init (recipes/synthetic/run.sh)"
    elif run_stage 6; then
        train_model "$pretrained" "init_from=$init"
        tune_lm "$pretrained"
        evaluate_dev "$pretrained"
    fi
done
if run_stage 7; then
    # 16 epochs at 2e-3: at asr-compress's default 3e-4, or at 8 epochs, the LSTM's ese/bbs stay
    # 2.5-7.4 WER points behind float; here they land within 1, the WaveNet's too
    # (docs/results.md).
    export COMPRESS_EPOCHS=${COMPRESS_EPOCHS:-16} COMPRESS_LR=${COMPRESS_LR:-2e-3}
    for model in speechocean762_{lstm,wavenet}{,_pretrained}; do
        compress_run speechocean762 "$model"
    done
fi

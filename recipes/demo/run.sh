#!/usr/bin/env bash
# make demo: the whole pipeline on a built-in corpus, about 15 minutes on 2 CPU cores.
#   0 synthesize 800 spoken digit strings (espeak-ng voices; 8 voices held out for test)
#   1 train lstm_small (experiment=demo_lstm)    2 train wavenet_small (experiment=demo_wavenet)
#   3 asr-hw report: compress both with the ese and bbs presets (12 fine-tuning epochs each at
#     lr 2e-3: asr-compress's default 3e-4 left them 14-19 WER points behind float),
#     score float / quantized / engine on the held-out voices, print the table, write
#     exp/demo/report/report.{md,html,json} and the figures.
# Usage: recipes/demo/run.sh [--stage N] [--stop-stage M]. Every stage resumes or skips what is
# already done, so a killed demo continues where it stopped.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"

if run_stage 0; then
    log "synthesizing the demo corpus"
    "$BIN/asr-data" synth --text "$ROOT/asr/resources/demo_digits.txt" \
        --out "$ROOT/data/demo" --num-utts 800 --seed 0
fi
if run_stage 1; then
    train_model demo_lstm
fi
if run_stage 2; then
    train_model demo_wavenet
fi
if run_stage 3; then
    log "compressing (ese, bbs) and evaluating on the modeled engines"
    (cd "$ROOT" && "$BIN/asr-hw" report -m hw=ese,bbs data=demo \
        +models.lstm=exp/demo_lstm/model.ckpt +models.wavenet=exp/demo_wavenet/model.ckpt \
        finetune.max_epochs=12 finetune.lr=2e-3 trainer.enable_progress_bar=false trainer.enable_model_summary=false \
        out=exp/demo/report)
fi

#!/usr/bin/env bash
# make demo: the whole pipeline on a built-in corpus, within 15 minutes on 2 CPU cores.
#   0 synthesize 2,400 spoken digit strings (espeak-ng): the 8 test voices held out, 112 voices
#     beyond the 48 of the split for training only (--extra-train-voices)
#   1 train lstm_small (experiment=demo_lstm)    2 train wavenet_small (experiment=demo_wavenet)
#   3 fine-tune demo_lstm into a delta LSTM (experiment=demo_delta_lstm)
#   4 asr-hw report: compress lstm and wavenet with the ese and bbs presets (6 fine-tuning
#     epochs each at lr 2e-3: asr-compress's default 3e-4 leaves them far behind float), score
#     float / quantized / engine on the held-out voices
#   5 add the delta point: the delta LSTM, column-balanced (spartus) over 8 PEs, on the delta
#     engine; the report (exp/demo/report/report.{md,html,json} and figures) holds every point
#   6 the RTL: the demo LSTM's ese and bbs engines generated and co-simulated with Verilator on
#     3 held-out utterances (every layer bit for bit, cycles against the timing model), written
#     beside the report (cosim_ese.txt, cosim_bbs.txt)
# Usage: recipes/demo/run.sh [--stage N] [--stop-stage M]. Every stage resumes or skips what is
# already done, so a killed demo continues where it stopped.
source "$(dirname "$0")/../common.sh"
parse_stages "$@"
REPORT=exp/demo/report

if run_stage 0; then
    log "synthesizing the demo corpus"
    "$BIN/asr-data" synth --text "$ROOT/asr/resources/demo_digits.txt" \
        --out "$ROOT/data/demo" --num-utts 2400 --extra-train-voices 112 --seed 0
fi
if run_stage 1; then
    train_model demo_lstm
fi
if run_stage 2; then
    train_model demo_wavenet
fi
if run_stage 3; then
    train_model demo_delta_lstm
fi
if run_stage 4; then
    log "compressing (ese, bbs) and evaluating on the modeled engines"
    (cd "$ROOT" && "$BIN/asr-hw" report -m hw=ese,bbs data=demo \
        +models.lstm=exp/demo_lstm/model.ckpt +models.wavenet=exp/demo_wavenet/model.ckpt \
        finetune.max_epochs=6 finetune.lr=2e-3 trainer.enable_model_summary=false \
        out=$REPORT)
fi
if run_stage 5; then
    log "compressing the delta LSTM (column-balanced) and evaluating it on the delta engine"
    (cd "$ROOT" && "$BIN/asr-hw" report hw=delta data=demo \
        +models.delta_lstm=exp/demo_delta_lstm/model.ckpt \
        compress.prune.num_pes=8 compress.prune.density=0.125 hw.num_pes=8 \
        finetune.max_epochs=6 finetune.lr=2e-3 trainer.enable_model_summary=false \
        out=$REPORT)
fi
if run_stage 6; then
    log "co-simulating the demo LSTM's ese and bbs engines (generated RTL, Verilator) on 3 held-out utterances"
    mapfile -t utts < <(head -n 3 "$ROOT/data/demo/test.jsonl" | \
        "$BIN/python" -c 'import json, sys; [print(json.loads(l)["audio_filepath"]) for l in sys.stdin]')
    for engine in ese bbs; do
        model=$(ls "$ROOT"/$REPORT/points/${engine}_*/lstm.model | head -n 1)
        (cd "$ROOT" && "$BIN/asr-hw" cosim "$model" "${utts[@]}" --engine $engine \
            > $REPORT/cosim_$engine.txt) || { cat "$ROOT/$REPORT/cosim_$engine.txt"; exit 1; }
        grep "bit-exact" "$ROOT/$REPORT/cosim_$engine.txt" | sed "s|^|$engine: |"
    done
fi

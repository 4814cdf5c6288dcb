#!/usr/bin/env bash
# make demo: the whole pipeline on a built-in corpus, within 15 minutes on 2 CPU cores.
#   0 synthesize 3,200 spoken digit strings (espeak-ng): the 8 test voices held out, 112 voices
#     beyond the 48 of the split for training only (--extra-train-voices), 800 more test
#     utterances (--extra-test-utts: 907 in all, ~3,400 words, so that 1.5 WER points are ~50
#     errors); a word 3-gram LM of the training transcripts (asr-lm build)
#   1 train lstm_small (experiment=demo_lstm)    2 train wavenet_small (experiment=demo_wavenet)
#   3 fine-tune demo_lstm into a delta LSTM (experiment=demo_delta_lstm)
#   4 asr-hw report: compress lstm and wavenet with the ese and bbs presets (6 fine-tuning
#     epochs at lr 2e-3, distilled from the float model: asr-compress's default 3e-4 leaves
#     them far behind float; both at 25% density), score float / quantized / engine on
#     the held-out voices, greedy and with beam search (width 16) and the 3-gram
#   5 add the delta point: the delta LSTM, column-balanced (spartus) over 8 PEs to 25% as
#     well (at 12.5% it needs 14 fine-tuning epochs to stay within 1.5 points), on the delta
#     engine; the report (exp/demo/report/report.{md,html,json} and figures) holds every point
#   6 the RTL: the demo LSTM's and WaveNet's ese and bbs engines generated and co-simulated
#     with Verilator on 3 held-out utterances (every layer bit for bit, cycles against the
#     timing model), written beside the report (cosim_{ese,bbs}.txt for the LSTM,
#     cosim_wavenet_{ese,bbs}.txt), a row each in the report's RTL section
#   7 (only when asked: make demo-pnr, or --stage 7 --stop-stage 7; it takes longer than the
#     rest of the demo) the demo LSTM's and WaveNet's ese engines scaled to 4 PEs, synthesized
#     with Yosys and placed and routed with nextpnr-ecp5 on an ECP5-85k: utilisation and Fmax
#     beside the report (pnr_ese.{txt,json}, pnr_wavenet_ese.{txt,json}) and a row each in its
#     RTL section; the results are cached, so a rerun costs nothing
# Two jobs run at a time, one thread each (on 2 cores, torch's second thread buys ~15%, a second
# job ~100%; one thread also makes the runs repeatable): the WaveNet (2, then its part of 4)
# beside the LSTM (1); then the delta LSTM (3, 5) beside the LSTM's part of 4. The background
# job's output goes to exp/demo/logs/.
# Usage: recipes/demo/run.sh [--stage N] [--stop-stage M]. Every stage resumes or skips what is
# already done, so a killed demo continues where it stopped.
source "$(dirname "$0")/../common.sh"
stop_stage=6   # stage 7 (place and route) only when asked for
parse_stages "$@"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
REPORT=exp/demo/report
LOGS=$ROOT/exp/demo/logs
# Every model keeps a quarter of its weights: at the presets' 11-13% they end 2-5 WER points
# behind float within this time (docs/results.md).
COMPRESS=(compress.prune.density=0.25 finetune.max_epochs=6 finetune.distill_weight=1.0)
LM=exp/demo/lm/3gram.arpa
DECODE=("decoders=[greedy,beam]" "lm=$LM")
mkdir -p "$LOGS"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT   # a failed stage stops the background job too

# report_points MODEL CKPT [overrides...]: MODEL's ese and bbs points, one after the other
report_points() {
    local name=$1 ckpt=$2; shift 2
    (cd "$ROOT" && "$BIN/asr-hw" report -m hw=ese,bbs data=demo "+models.$name=$ckpt" \
        hydra.launcher.n_jobs=1 finetune.lr=2e-3 trainer.enable_model_summary=false \
        out=$REPORT "${DECODE[@]}" "$@")
}

# background PID_VAR JOB LOG: run the shell function JOB in the background, its output in LOG;
# its PID goes into the variable named PID_VAR (each job its own, for join)
background() {
    log "$2 in the background (log: ${3#"$ROOT"/})"
    "$2" > "$3" 2>&1 &
    printf -v "$1" '%s' "$!"
}
# join PID LOG: wait for the background job PID; on failure show its log's end and stop
join() {
    wait "$1" || { tail -n 30 "$2"; log "failed: see $2"; exit 1; }
    log "background job done (${2#"$ROOT"/})"
}

wavenet_job() {
    if run_stage 2; then
        train_model demo_wavenet
    fi
    if run_stage 4; then
        log "compressing the WaveNet (ese, bbs) and evaluating it on the modeled engines"
        report_points wavenet exp/demo_wavenet/model.ckpt "${COMPRESS[@]}"
    fi
}
delta_job() {
    if run_stage 3; then
        train_model demo_delta_lstm
    fi
    if run_stage 5; then
        delta_point demo exp/demo_delta_lstm/model.ckpt $REPORT 0.25 finetune.max_epochs=6 \
            finetune.lr=2e-3 trainer.enable_model_summary=false "${DECODE[@]}"
    fi
}

if run_stage 0; then
    log "synthesizing the demo corpus"
    "$BIN/asr-data" synth --text "$ROOT/asr/resources/demo_digits.txt" \
        --out "$ROOT/data/demo" --num-utts 2400 --extra-train-voices 112 --extra-test-utts 800 --seed 0
fi
if [ ! -f "$ROOT/$LM" ] || [ "$ROOT/data/demo/train.jsonl" -nt "$ROOT/$LM" ]; then
    # whatever stage the demo starts at: stages 4 and 5 decode with it
    "$BIN/asr-lm" build "$ROOT/data/demo/train.jsonl" --order 3 --out "$ROOT/$LM"
fi
background WAVENET_PID wavenet_job "$LOGS/wavenet.log"
if run_stage 1; then
    train_model demo_lstm
fi
background DELTA_PID delta_job "$LOGS/delta_lstm.log"
if run_stage 4; then
    log "compressing the LSTM (ese, bbs) and evaluating it on the modeled engines"
    report_points lstm exp/demo_lstm/model.ckpt "${COMPRESS[@]}"
fi
join "$DELTA_PID" "$LOGS/delta_lstm.log"
join "$WAVENET_PID" "$LOGS/wavenet.log"
if run_stage 4 || run_stage 5; then
    # the points are cached: this only gathers all of them into the report, now that no job
    # that writes it is left running
    report_points lstm exp/demo_lstm/model.ckpt "${COMPRESS[@]}"
    log "report: $REPORT/report.md"
fi
if run_stage 6; then
    log "co-simulating the demo LSTM's and WaveNet's ese and bbs engines (generated RTL, Verilator) on 3 held-out utterances"
    mapfile -t utts < <(head -n 3 "$ROOT/data/demo/test.jsonl" | \
        "$BIN/python" -c 'import json, sys; [print(json.loads(l)["audio_filepath"]) for l in sys.stdin]')
    for engine in ese bbs; do
        # the newest point: a tree from an earlier demo keeps the points of its test set
        model=$(ls -t "$ROOT"/$REPORT/points/${engine}_*/lstm.model | head -n 1)
        (cd "$ROOT" && "$BIN/asr-hw" cosim "$model" "${utts[@]}" --engine $engine \
            --report $REPORT/report.md > $REPORT/cosim_$engine.txt) || {
            cat "$ROOT/$REPORT/cosim_$engine.txt"; exit 1; }
        grep "bit-exact" "$ROOT/$REPORT/cosim_$engine.txt" | sed "s|^|$engine: |"
        model=$(ls -t "$ROOT"/$REPORT/points/${engine}_*/wavenet.model | head -n 1)
        (cd "$ROOT" && "$BIN/asr-hw" cosim "$model" "${utts[@]}" --engine $engine \
            --report $REPORT/report.md > $REPORT/cosim_wavenet_$engine.txt) || {
            cat "$ROOT/$REPORT/cosim_wavenet_$engine.txt"; exit 1; }
        grep "bit-exact" "$ROOT/$REPORT/cosim_wavenet_$engine.txt" | sed "s|^|wavenet $engine: |"
    done
fi
if run_stage 7; then
    # router1, nextpnr's default: router2 leaves about a hundred wires overused on the LSTM's
    log "placing and routing the demo LSTM's and WaveNet's ese engines at 4 PEs on an ECP5-85k (Yosys, nextpnr-ecp5; about 13 and 7 min)"
    for net in lstm wavenet; do
        model=$(ls -t "$ROOT"/$REPORT/points/ese_*/$net.model | head -n 1)
        out=$REPORT/pnr_$([ $net = lstm ] && echo ese || echo wavenet_ese)
        PNR=(--engine ese --set num_pes=4 elementwise_lanes=1 activation_queue_depth=8
             --device ecp5-85k --rtl-dir $REPORT/rtl_${net}_ese4)
        (cd "$ROOT" && "$BIN/asr-hw" synth "$model" "${PNR[@]}" --report $REPORT/report.md \
            > $out.txt) || {
            cat "$ROOT/$out.txt"; exit 1; }
        (cd "$ROOT" && "$BIN/asr-hw" synth "$model" "${PNR[@]}" --json > $out.json)
        cat "$ROOT/$out.txt"
    done
fi

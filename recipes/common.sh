# Shared helpers of the recipes' shell scripts: timestamped logs and stage selection.
# Usage in a recipe: source "$(dirname "$0")/../common.sh"; parse_stages "$@"
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/.venv/bin}

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') [$(basename "$0")] $*"; }

# --stage N --stop-stage M select a range of numbered stages (icefall's convention).
stage=0
stop_stage=100
ARGS=()
parse_stages() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --stage) stage=$2; shift 2 ;;
            --stop-stage) stop_stage=$2; shift 2 ;;
            *) ARGS+=("$1"); shift ;;
        esac
    done
}
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# Extra Hydra overrides for every asr-train / asr-compress call of a recipe, as ESPnet's
# --asr_args: TRAIN_ARGS="trainer=cpu model=lstm_medium" COMPRESS_ARGS="finetune.lr=1e-3".
read -r -a TRAIN_EXTRA <<< "${TRAIN_ARGS:-}"
read -r -a COMPRESS_EXTRA <<< "${COMPRESS_ARGS:-}"

# train_model EXPERIMENT [overrides...]: train once; resume a killed run; skip a finished one.
train_model() {
    local exp=$1; shift
    local run=$ROOT/exp/$exp
    if [ -f "$run/model.ckpt" ] && [ -f "$run/metrics.json" ]; then
        log "$exp: finished earlier ($run/model.ckpt), skipping"
        return
    fi
    local resume=false
    [ -f "$run/checkpoints/last.ckpt" ] && resume=true && log "$exp: resuming the killed run"
    log "$exp: training"
    (cd "$ROOT" && "$BIN/asr-train" "experiment=$exp" "resume=$resume" "$@" \
        ${TRAIN_EXTRA[@]+"${TRAIN_EXTRA[@]}"})
    log "$exp: metrics in $run/metrics.json"
    cat "$run/metrics.json"; echo
}

# prepare_and_train CORPUS: the stages every recipe shares. 0 runs recipes/CORPUS/prepare.sh
# (with the recipe's first argument), 1 trains CORPUS_lstm, 2 trains CORPUS_wavenet.
prepare_and_train() {
    local corpus=$1
    if run_stage 0; then
        bash "$ROOT/recipes/$corpus/prepare.sh" ${ARGS[0]:+"${ARGS[0]}"}
    fi
    if run_stage 1; then
        train_model "${corpus}_lstm"
    fi
    if run_stage 2; then
        train_model "${corpus}_wavenet"
    fi
}

# compress_run CORPUS RUN [overrides...]: asr-compress exp/RUN/model.ckpt with the ese and bbs
# presets, fine-tuning COMPRESS_EPOCHS epochs (default 8) at COMPRESS_LR (default asr-compress's
# finetune.lr, 3e-4) on CORPUS's training set; leaves
# exp/RUN/{ese,bbs}.model beside model.ckpt. A finished artifact is skipped and a killed
# fine-tuning resumes.
compress_run() {
    local corpus=$1 name=$2; shift 2
    local run=$ROOT/exp/$name preset resume
    if [ ! -f "$run/model.ckpt" ]; then
        log "$run/model.ckpt missing: train it first"
        return
    fi
    for preset in ese bbs; do
        if [ -f "$run/$preset.model" ]; then
            log "$name: $preset.model done earlier, skipping"
            continue
        fi
        resume=false
        [ -f "$run/$preset.finetune/checkpoints/last.ckpt" ] && resume=true
        log "$name: compressing with the $preset preset"
        (cd "$ROOT" && "$BIN/asr-compress" "model=$run/model.ckpt" "compress=$preset" \
            "data=$corpus" "finetune.max_epochs=${COMPRESS_EPOCHS:-8}" \
            ${COMPRESS_LR:+"finetune.lr=$COMPRESS_LR"} \
            "out=$run/$preset.model" "resume=$resume" "$@" \
            ${COMPRESS_EXTRA[@]+"${COMPRESS_EXTRA[@]}"})
    done
}

# evaluate_artifact MANIFEST RUN FILE [asr-eval options...]: asr-eval exp/RUN/FILE (model.ckpt,
# ese.model or bbs.model; nothing when it is absent) on MANIFEST into exp/RUN/eval_test/,
# eval_test_ese/ or eval_test_bbs/.
evaluate_artifact() {
    local manifest=$1 run=$ROOT/exp/$2 file=$3 suffix=""; shift 3
    [ -f "$run/$file" ] || return 0
    [ "$file" != model.ckpt ] && suffix=_${file%.model}
    log "evaluating $run/$file on $manifest"
    "$BIN/asr-eval" "$run/$file" "$manifest" --out "$run/eval_test$suffix" "$@"
}

# evaluate_artifacts MANIFEST RUN [asr-eval options...]: evaluate_artifact for the float model
# and both compressed ones.
evaluate_artifacts() {
    local manifest=$1 run=$2 file; shift 2
    for file in model.ckpt ese.model bbs.model; do
        evaluate_artifact "$manifest" "$run" "$file" "$@"
    done
}

# import_and_split SRC FORMAT OUT [split options...]: stage 0 imports the corpus at SRC (an
# asr-data import --format) into OUT/all.jsonl; stage 1 splits it with the given asr-data split
# options and prints the statistics of the parts it wrote.
import_and_split() {
    local src=$1 format=$2 out=$3; shift 3
    if run_stage 0; then
        log "stage 0: import $src"
        "$BIN/asr-data" import "$src" --format "$format" --out "$out/all.jsonl"
    fi
    if run_stage 1; then
        log "stage 1: split ($*)"
        "$BIN/asr-data" split "$out/all.jsonl" --out-dir "$out" "$@"
        local parts=()
        for part in train dev test; do
            [ -s "$out/$part.jsonl" ] && parts+=("$out/$part.jsonl")
        done
        "$BIN/asr-data" stats "${parts[@]}"
    fi
}

# delta_point DATA CKPT OUT DENSITY [overrides...]: the delta LSTM CKPT compressed
# column-balanced (spartus) to DENSITY over the 8 PEs of the delta engine resized to 8, scored
# into the report OUT
delta_point() {
    local data=$1 ckpt=$2 out=$3 density=$4; shift 4
    log "compressing the delta LSTM (column-balanced) and evaluating it on the delta engine"
    (cd "$ROOT" && "$BIN/asr-hw" report hw=delta "data=$data" "+models.delta_lstm=$ckpt" \
        compress.prune.num_pes=8 "compress.prune.density=$density" hw.num_pes=8 "out=$out" "$@")
}

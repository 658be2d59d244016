#!/usr/bin/env bash
# The training plan for a built-in model that hears real speech, as one resumable command:
# synthesize the standard, Piper and Kokoro corpora (no rooms in the acoustic chain), fine-tune the
# shipped model on them (stage 1), add clean standard voices and fine-tune again (stage 2), take
# the point between the shipped model and stage 2 that keeps the clean standard voices' validation
# CER within 10 % (WiSE-FT, scripts/interpolate_checkpoints.py), then measure each on the
# real-speech corpus. Every step resumes: run the same command again
# after any stop (Ctrl-C, a lost machine) and only the unfinished part runs.
#
#   bash scripts/real_voice_model.sh                  # WORK=work; about 5 h on 2 cores
#   WORK=/data/w SCALE=0.01 EPOCHS=1 bash scripts/real_voice_model.sh   # a quick trial of every step
#
# Slice by slice, for machines that do not live 5 h: PART=I/N synthesizes only the I-th of N slices
# of the Kokoro training utterances (`synth --part`), fine-tunes stage 1 on it from the previous
# slice's model, keeps that model in CARRY (default candidates/real_voice: small enough to commit,
# so the next machine goes on from it) and measures it on real speech; the last slice also runs
# stage 2. Run PART=0/4, then 1/4, 2/4, 3/4, on the same or on fresh machines.
#
#   PART=0/4 EPOCHS=3 bash scripts/real_voice_model.sh
set -euo pipefail
W=${WORK:-work}
S=${SCALE:-1}                       # hours of every corpus are multiplied by this
E1=${EPOCHS:-6}; E2=${EPOCHS2:-${EPOCHS:-3}}
PART=${PART:-0/1}; P=${PART%/*}; N=${PART#*/}
CARRY=${CARRY:-candidates/real_voice}
FX=speed,pad,noise,channel,gain
BIN=${VENV:-.venv}/bin
I=$BIN/introspeech
h() { $BIN/python -c "print(round($1 * $S, 4))"; }
mkdir -p "$W"
say() { echo "[$(date +%H:%M:%S)] $*"; }

say "corpora (Kokoro: slice $PART)"
$I synth --out "$W/corpus_aug_nr" --hours "$(h 5)" --seed 1 --augment 0.6 --effects $FX --resume
$I synth --out "$W/piper_nr" --hours "$(h 3)" --seed 1 --piper --augment 0.7 --effects $FX --resume
$I synth --out "$W/kokoro8" --kokoro --hours "$(h 8)" --seed 7 --blends 8 --augment 0.7 --phrases 0.3 \
    --effects $FX --part "$PART" --resume
last=$([ "$P" -eq $((N - 1)) ] && echo 1 || echo 0)
[ "$last" = 1 ] && $I synth --out "$W/std_clean" --hours "$(h 4)" --seed 5 --augment 0.2 --effects $FX --resume

train() {  # OUT, then the arguments of `introspeech train`; resumes an interrupted run
    local out=$1; shift
    if [ -f "$out/last.json" ]; then $I train --out "$out" "$@" --resume; else $I train --out "$out" "$@"; fi
}
init=src/introspeech/data/model/default
if [ "$N" -gt 1 ] && [ "$P" -gt 0 ]; then
    init="$CARRY/part$((P - 1))"
    [ -f "$init.safetensors" ] || { echo "slice $PART goes on from $init, which is missing: run PART=$((P - 1))/$N first"; exit 1; }
fi
k1="$W/model_k1"; [ "$N" -gt 1 ] && k1="$W/model_k1_part$P"
say "stage 1: Kokoro, Piper and the augmented standard voices, from $init"
train "$k1" --corpus "$W/corpus_aug_nr" --extra-train "$W/kokoro8" --extra-train "$W/piper_nr" \
    --init "$init" --epochs "$E1" --lr 1e-3 --vtlp 0.15
models=(--model "$k1/model")
if [ "$N" -gt 1 ]; then
    mkdir -p "$CARRY"
    cp "$k1/model.json" "$CARRY/part$P.json" && cp "$k1/model.safetensors" "$CARRY/part$P.safetensors"
fi
if [ "$last" = 1 ]; then
    say "stage 2: clean standard voices added, from stage 1"
    train "$W/model_k2" --corpus "$W/corpus_aug_nr" --extra-train "$W/kokoro8" --extra-train "$W/piper_nr" \
        --extra-train "$W/std_clean" --init "$k1/model" --epochs "$E2" --lr 4e-4 --vtlp 0.15
    models+=(--model "$W/model_k2/model")
    say "WiSE-FT: the point between the shipped model and stage 2 that keeps clean standard voices within 10 % (validation)"
    [ -f "$W/model_wise.json" ] || $BIN/python scripts/interpolate_checkpoints.py --base src/introspeech/data/model/default \
        --tuned "$W/model_k2/model" --alphas 0.5,0.6,0.7,0.8,0.9,1.0 --bound "$W/std_clean:valid=0.10" \
        --report "$W/kokoro8:valid" --report "$W/kokoro8:heldout" --out "$W/model_wise"
    models+=(--model "$W/model_wise")
fi

say "measured on real speech (and the demo corpus' synthetic splits)"
[ -f "$W/realspeech/corpus.json" ] || $I realspeech --out "$W/realspeech"   # corpus.json: written last
$BIN/python benchmarks/real_speech.py --corpus "$W/realspeech" "${models[@]}" \
    --no-whisper --no-packaged --aligner-check 0 --json "$W/real_speech.json"
for m in "${models[@]}"; do  # the ship bound: synthetic test CER <= 10 % (greedy)
    [ "$m" = --model ] && continue
    $I evaluate --model "$m" --splits test,heldout --json > "${m%/model}.demo_corpus.json"
done
say "done: $W/real_speech.json, $W/model_k*.demo_corpus.json"

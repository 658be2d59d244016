#!/usr/bin/env bash
# The training plan for a built-in model that hears real speech, as one resumable command:
# synthesize the standard, Piper and Kokoro corpora (no rooms in the acoustic chain), fine-tune the
# shipped model on them (stage 1), add clean standard voices and fine-tune again (stage 2), then
# measure each stage on the real-speech corpus. Every step resumes: run the same command again
# after any stop (Ctrl-C, a lost machine) and only the unfinished part runs.
#
#   bash scripts/real_voice_model.sh                  # WORK=work; about 5 h on 2 cores
#   WORK=/data/w SCALE=0.01 EPOCHS=1 bash scripts/real_voice_model.sh   # a quick trial of every step
set -euo pipefail
W=${WORK:-work}
S=${SCALE:-1}                       # hours of every corpus are multiplied by this
E1=${EPOCHS:-6}; E2=${EPOCHS2:-${EPOCHS:-3}}
FX=speed,pad,noise,channel,gain
BIN=${VENV:-.venv}/bin
I=$BIN/introspeech
h() { $BIN/python -c "print(round($1 * $S, 4))"; }
mkdir -p "$W"
say() { echo "[$(date +%H:%M:%S)] $*"; }

say "corpora"
$I synth --out "$W/corpus_aug_nr" --hours "$(h 5)" --seed 1 --augment 0.6 --effects $FX --resume
$I synth --out "$W/piper_nr" --hours "$(h 3)" --seed 1 --piper --augment 0.7 --effects $FX --resume
$I synth --out "$W/kokoro8" --kokoro --hours "$(h 8)" --seed 7 --blends 8 --augment 0.7 --phrases 0.3 \
    --effects $FX --resume
$I synth --out "$W/std_clean" --hours "$(h 4)" --seed 5 --augment 0.2 --effects $FX --resume

train() {  # OUT, then the arguments of `introspeech train`; resumes an interrupted run
    local out=$1; shift
    if [ -f "$out/last.json" ]; then $I train --out "$out" "$@" --resume; else $I train --out "$out" "$@"; fi
}
say "stage 1: Kokoro, Piper and the augmented standard voices, from the shipped model"
train "$W/model_k1" --corpus "$W/corpus_aug_nr" --extra-train "$W/kokoro8" --extra-train "$W/piper_nr" \
    --init src/introspeech/data/model/default --epochs "$E1" --lr 1e-3 --vtlp 0.15
say "stage 2: clean standard voices added, from stage 1"
train "$W/model_k2" --corpus "$W/corpus_aug_nr" --extra-train "$W/kokoro8" --extra-train "$W/piper_nr" \
    --extra-train "$W/std_clean" --init "$W/model_k1/model" --epochs "$E2" --lr 4e-4 --vtlp 0.15

say "measured on real speech (and the demo corpus' synthetic splits)"
[ -f "$W/realspeech/corpus.json" ] || $I realspeech --out "$W/realspeech"   # corpus.json: written last
$BIN/python benchmarks/real_speech.py --corpus "$W/realspeech" --model "$W/model_k1/model" \
    --model "$W/model_k2/model" --no-whisper --no-packaged --aligner-check 0 --json "$W/real_speech.json"
for m in model_k1 model_k2; do  # the ship bound: synthetic test CER <= 10 % (greedy)
    $I evaluate --model "$W/$m/model" --splits test,heldout --json > "$W/$m.demo_corpus.json"
done
say "done: $W/real_speech.json, $W/model_k*.demo_corpus.json"

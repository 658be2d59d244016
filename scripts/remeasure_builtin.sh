#!/usr/bin/env bash
# Every measurement of the README, the report and CHANGELOG that depends on the built-in model's
# weights, run again on the model now at src/introspeech/data/model/default (after it is
# replaced). Each step writes OUT/NAME.log (and its own folder or JSON) and, when it succeeds,
# OUT/NAME.done with its seconds; run the same command after any stop and only the steps without a
# .done run. STEPS=a,b,c runs only those. About 4 h on 2 cores.
#
#   bash scripts/remeasure_builtin.sh                 # OUT=out/remeasure, WORK=work
#   STEPS=evaluate,real_speech bash scripts/remeasure_builtin.sh
#
# Not here, because they do not depend on the weights: the attribution engines' timings (the same
# architecture does the same arithmetic), the profiles' cost ratios, synthesis throughput, and the
# hama / Whisper rows (their weights are the packages').
set -euo pipefail
W=${WORK:-work}
O=${OUT:-out/remeasure}
BIN=${VENV:-.venv}/bin
I=$BIN/introspeech
PY=$BIN/python
LM=out/lm/wordnet.arpa
REAL=asterisk_g722,pocketsphinx,alsa
mkdir -p "$O"
say() { echo "[$(date +%H:%M:%S)] $*"; }

step() {  # NAME 'COMMAND': runs the command (bash -c) unless NAME is done or not in STEPS
    local name=$1 cmd=$2
    if [ -n "${STEPS:-}" ] && [[ ",$STEPS," != *",$name,"* ]]; then return; fi
    if [ -f "$O/$name.done" ]; then say "$name: done before ($(cat "$O/$name.done") s)"; return; fi
    say "$name"
    local t0; t0=$(date +%s)
    if ! bash -c "$cmd" > "$O/$name.log" 2>&1; then
        say "$name FAILED: see $O/$name.log"; tail -5 "$O/$name.log"; exit 1
    fi
    echo $(($(date +%s) - t0)) > "$O/$name.done"
}

export I PY W O LM REAL
# the corpora the measurements read (each resumes or is skipped when present)
step corpora '$I synth --out $W/corpus --hours 20 --seed 1 --resume
    [ -f $W/realspeech/corpus.json ] || $I realspeech --out $W/realspeech
    [ -f $LM ] || $I lm --out $LM'
# "The built-in model": CER/WER per split, greedy and with the word model; per voice; alignment
step evaluate '$I evaluate --corpus $W/corpus --json > $O/evaluate_corpus.json
    $I evaluate --json > $O/evaluate_demo.json
    $I evaluate --corpus $W/corpus --splits test,heldout --lm $LM --json > $O/evaluate_corpus_lm.json
    $I evaluate --splits test,heldout --lm $LM --json > $O/evaluate_demo_lm.json'
step per_voice '$PY benchmarks/per_voice.py --corpus $W/corpus
    $PY benchmarks/per_voice.py --corpus $W/corpus --warp 1.0 0.9 1.1 1.15 1.2'
step forced_alignment '$PY benchmarks/forced_alignment.py --corpus $W/corpus --json $O/forced_alignment.json'
# "Real human speech": pooled and per source, by length, greedy and with the word model
step real_speech '$PY benchmarks/real_speech.py --corpus $W/realspeech --model src/introspeech/data/model/default \
    --no-whisper --no-packaged --aligner-check 0 --lm $LM --json $O/real_speech.json'
# "The seed'"'"'s findings on real speech" and "Global introspection": NAPs and patterns
step profiles '$I naps --corpus $W/realspeech --splits $REAL --out $O/naps_real
    $I patterns --corpus $W/realspeech --splits $REAL --out $O/patterns_real
    $I naps --out $O/naps_synth
    $I patterns --out $O/patterns_synth'
# "What models that learned from real speech tell us": the builtin rows
step findings '$I findings --out $O/findings --models builtin'
# "Do the units matter?": neuron and SAE-feature ablations, the SAE table
step ablate '$I ablate --out $O/ablate --draws 29
    $I ablate --out $O/ablate_k16 --k 1,2,4,8,16 --draws 49'
step sae '$PY benchmarks/sae.py --json $O/sae.json
    $I sae --out $O/sae
    $I ablate --sae $O/sae --out $O/ablate_sae'
# "Sanity checks", "Which explanation to trust"
step sanity '$I sanity --out $O/sanity'
step explanations '$I explanations --out $O/explanations --sanity $O/sanity'
# "Where phones live": synthetic and real
step representations '$I representations --out $O/representations --per-utterance 30 --bootstrap 100 \
        --permutations 99 --probe-permutations 9
    $I representations --corpus $W/realspeech --split asterisk_g722 --out $O/representations_real \
        --per-utterance 30 --bootstrap 100 --permutations 99 --probe-permutations 9'
# "Long recordings": pieces against the whole run on the built-in model
step long_recording '$PY benchmarks/long_recording.py --minutes 10 --json $O/long_recording.json'
# the report: every section on the new model
step demo '$I demo --out $O/demo'
say "done: $O"

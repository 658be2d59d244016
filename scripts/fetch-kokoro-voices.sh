#!/usr/bin/env bash
# Kokoro's voices (style tables) from the npm package kokoro-js@1.2.1, into the environment's
# share/kokoro-js/voices, where `introspeech synth --kokoro` reads them. Idempotent.
# Usage: scripts/fetch-kokoro-voices.sh [PYTHON]   (default: .venv/bin/python)
set -euo pipefail
PY=${1:-.venv/bin/python}
DEST=$("$PY" -c 'import sys; print(sys.prefix)')/share/kokoro-js/voices
[ -f "$DEST/af_heart.bin" ] && [ "$(ls "$DEST"/*.bin | wc -l)" -ge 54 ] && exit 0
command -v npm > /dev/null || { echo "npm is missing: apt-get install npm" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent kokoro-js@1.2.1 > /dev/null && tar xzf kokoro-js-1.2.1.tgz package/voices)
mkdir -p "$DEST"
cp "$tmp"/package/voices/*.bin "$DEST"/

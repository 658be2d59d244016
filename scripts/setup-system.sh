#!/usr/bin/env bash
# Debian packages introspeech uses: synthesizers and sentence sources for `introspeech synth`,
# headless Chromium for the report test, real human speech for `introspeech realspeech`. Idempotent: installs only what is missing, and only as root.
set -euo pipefail
PKGS=(espeak-ng libespeak-ng1 festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festlex-cmu
      festvox-italp16k festvox-itapc16k festvox-czech-dita festvox-czech-machac festvox-czech-ph
      festvox-suopuhe-lj festvox-suopuhe-mv
      flite wordnet-base fortunes-min fortunes chromium libsndfile1
      asterisk-core-sounds-en asterisk-core-sounds-en-g722 asterisk-core-sounds-en-wav pocketsphinx-testdata alsa-utils)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages (run as root to install): ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

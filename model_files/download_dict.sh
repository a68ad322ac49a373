#!/usr/bin/env bash
# Fetch the UNIMO English vocabulary (GPT-2 BPE + fairseq/RoBERTa dictionary) into model_files/dict/.
# Order: already present -> copy from ../shared/data/unimo_dict (this workplace) -> download the official files.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dst="$here/dict"
files=(unimo_en.encoder.json unimo_en.vocab.bpe unimo_en.vocab.txt)
# sha256 of the official files (PaddlePaddle/Research NLP/UNIMO/model_files/dict, identical to GPT-2/RoBERTa's)
declare -A sha=(
  [unimo_en.encoder.json]=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
  [unimo_en.vocab.bpe]=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
  [unimo_en.vocab.txt]=d0ccae1974ebc4f30ed70d46cbbed4c8af123cdb9c584c0444d8f8b4955aac17
)
base_url="https://raw.githubusercontent.com/PaddlePaddle/Research/master/NLP/UNIMO/model_files/dict"
shared="${UNIMO_SHARED:-$here/../../shared}/data/unimo_dict"
mkdir -p "$dst"

check() { echo "${sha[$1]}  $dst/$1" | sha256sum -c --quiet - 2>/dev/null; }

for f in "${files[@]}"; do
  if [ -f "$dst/$f" ] && check "$f"; then continue; fi
  if [ -f "$shared/$f" ]; then
    cp "$shared/$f" "$dst/$f.tmp" && mv "$dst/$f.tmp" "$dst/$f"
  elif command -v curl >/dev/null && curl -fsSL --connect-timeout 10 --max-time 120 "$base_url/$f" -o "$dst/$f.tmp"; then
    mv "$dst/$f.tmp" "$dst/$f"
  else
    rm -f "$dst/$f.tmp"
    echo "ERROR: cannot get $f: not in $shared and download from $base_url failed (no network?)." >&2
    echo "       Copy the three files ${files[*]} into $dst by hand." >&2
    exit 1
  fi
  if ! check "$f"; then
    echo "ERROR: $dst/$f has an unexpected sha256 (expected ${sha[$f]}); removed." >&2
    rm -f "$dst/$f"; exit 1
  fi
done
echo "vocabulary ready in $dst"

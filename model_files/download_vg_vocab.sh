#!/usr/bin/env bash
# Fetch the Visual Genome 1600-400-20 vocabularies (objects / attributes / relations) used by
# `python -m preprocess.rewrite` for scene-graph rewriting.
#
# Usage: bash model_files/download_vg_vocab.sh [DEST]     (default DEST: model_files/vg_1600_400_20)
# Source, in order: $UNIMO_SHARED/data/vg_1600_400_20 (default ../shared next to the repository) when present,
# else the bottom-up-attention repository ($VG_VOCAB_URL overrides the base URL). Files are checked against
# their published sha256 sums; nothing is left in DEST unless all three files verify.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
DEST="${1:-$HERE/vg_1600_400_20}"
SHARED="${UNIMO_SHARED:-$REPO/../shared}/data/vg_1600_400_20"
URL="${VG_VOCAB_URL:-https://raw.githubusercontent.com/peteanderson80/bottom-up-attention/master/data/genome/1600-400-20}"
FILES=(objects_vocab.txt attributes_vocab.txt relations_vocab.txt)
declare -A SHA=(
  [objects_vocab.txt]=d985096938db111f585a311ff0a2ee9092fbc325c3a619ac9622e57e5389722f
  [attributes_vocab.txt]=19981b5a288f284c576545a21de78634f1a78c26b6949f7acf12b924739fdc66
  [relations_vocab.txt]=664bb4a8f363196d86e3b800a29746d3c60f36d4fd211fa249fa572e1579d3fe
)

fail() { echo "download_vg_vocab.sh: $*" >&2; exit 1; }

mkdir -p "$(dirname "$DEST")"
TMP="$(mktemp -d "${DEST}.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

if [[ -d "$SHARED" ]]; then
  echo "copying from $SHARED"
  for f in "${FILES[@]}"; do
    [[ -f "$SHARED/$f" ]] || fail "$SHARED/$f missing"
    cp "$SHARED/$f" "$TMP/$f"
  done
else
  echo "downloading from $URL"
  for f in "${FILES[@]}"; do
    if command -v curl >/dev/null 2>&1; then
      curl -fsSL --retry 2 --max-time 60 -o "$TMP/$f" "$URL/$f" || fail "could not download $URL/$f (no network? \
put the three files in $DEST by hand, or set UNIMO_SHARED to a folder with data/vg_1600_400_20)"
    elif command -v wget >/dev/null 2>&1; then
      wget -q -T 60 -O "$TMP/$f" "$URL/$f" || fail "could not download $URL/$f (no network?)"
    else
      fail "neither curl nor wget is installed"
    fi
  done
fi

for f in "${FILES[@]}"; do
  got="$(sha256sum "$TMP/$f" | cut -d' ' -f1)"
  [[ "$got" == "${SHA[$f]}" ]] || fail "$f: sha256 $got, expected ${SHA[$f]} (corrupt or different version)"
done

rm -rf "$DEST"
mv "$TMP" "$DEST"
trap - EXIT
echo "VG vocabularies ready in $DEST"

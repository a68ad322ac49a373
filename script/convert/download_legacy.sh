#!/usr/bin/env bash
# Download and unpack one released UNIMO checkpoint (Paddle 1.x save_persistables directory) into
# model_files/<name>/, then print the command that converts it. Used by model_files/download_unimo_*.sh.
#
#   bash script/convert/download_legacy.sh NAME        NAME: unimo_base_en unimo_large_en unimo_mnli_base_en
#                                                            unimo_mnli_large_en
# Environment (all optional):
#   UNIMO_MODEL_DIR           where <name>/ is created (default: model_files/ of this repository)
#   UNIMO_DOWNLOAD_BASE_URL   mirror (default https://unimo.bj.bcebos.com/model; file:// works)
#   UNIMO_DOWNLOAD_TIMEOUT    connect timeout in seconds (default 30); a stalled transfer aborts after 120 s
#   UNIMO_EXPECTED_SHA256     checksum to verify (Baidu publishes none; the computed sum is always printed)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NAME="${1:?usage: download_legacy.sh NAME}"
case "$NAME" in
  unimo_base_en|unimo_mnli_base_en) CONFIG="model_files/config/unimo_base_en.json" ;;
  unimo_large_en|unimo_mnli_large_en) CONFIG="model_files/config/unimo_large_en.json" ;;
  *) echo "error: unknown checkpoint '$NAME'" \
          "(unimo_base_en, unimo_large_en, unimo_mnli_base_en, unimo_mnli_large_en)" >&2
     exit 2 ;;
esac
BASE_URL="${UNIMO_DOWNLOAD_BASE_URL:-https://unimo.bj.bcebos.com/model}"
URL="$BASE_URL/$NAME.tar.gz"
DEST_ROOT="${UNIMO_MODEL_DIR:-$ROOT/model_files}"
TIMEOUT="${UNIMO_DOWNLOAD_TIMEOUT:-30}"
# No checksum is published for the official archives; set UNIMO_EXPECTED_SHA256 to pin one you trust.
EXPECTED="${UNIMO_EXPECTED_SHA256:-}"
TARGET="$DEST_ROOT/$NAME"

if [ -d "$TARGET" ] && [ -n "$(ls -A "$TARGET")" ]; then
  echo "$TARGET already exists; delete it to download again."
else
  created_root=0
  [ -d "$DEST_ROOT" ] || { mkdir -p "$DEST_ROOT"; created_root=1; }
  WORK="$(mktemp -d "$DEST_ROOT/.$NAME.download-XXXXXX")"
  cleanup() {
    rm -rf "$WORK"
    if [ "$created_root" = 1 ]; then rmdir "$DEST_ROOT" 2>/dev/null || true; fi
  }
  trap cleanup EXIT
  ARCHIVE="$WORK/$NAME.tar.gz"
  echo "downloading $URL"
  ok=0
  if command -v curl >/dev/null 2>&1; then
    curl -fL --connect-timeout "$TIMEOUT" --speed-limit 1 --speed-time 120 --retry 1 -o "$ARCHIVE" "$URL" && ok=1
  elif command -v wget >/dev/null 2>&1; then
    wget --timeout="$TIMEOUT" --tries=2 -O "$ARCHIVE" "$URL" && ok=1
  else
    echo "error: neither curl nor wget is installed" >&2
    exit 1
  fi
  if [ "$ok" != 1 ] || [ ! -s "$ARCHIVE" ]; then
    echo "error: could not download $URL (network unreachable, proxy needed, or the file moved)." >&2
    echo "       Download it elsewhere and unpack it with: tar zxf $NAME.tar.gz -C $DEST_ROOT" >&2
    exit 1
  fi
  SUM="$(sha256sum "$ARCHIVE" | cut -d' ' -f1)"
  if [ -n "$EXPECTED" ]; then
    if [ "$SUM" != "$EXPECTED" ]; then
      echo "error: sha256 mismatch for $URL: expected $EXPECTED, got $SUM" >&2
      exit 1
    fi
    echo "sha256 verified: $SUM"
  else
    echo "sha256 $SUM  $NAME.tar.gz (no official checksum is published; record this one)"
  fi
  if ! tar zxf "$ARCHIVE" -C "$WORK"; then
    echo "error: $ARCHIVE is not a valid .tar.gz" >&2
    exit 1
  fi
  if [ ! -d "$WORK/$NAME" ]; then
    echo "error: the archive does not contain a $NAME/ directory" >&2
    exit 1
  fi
  rm -rf "$TARGET"
  mv "$WORK/$NAME" "$TARGET"
  echo "unpacked into $TARGET"
fi
echo "convert it with:"
echo "  python -m unimo.convert legacy --input $TARGET --config $ROOT/$CONFIG --output ${TARGET}_paddle"

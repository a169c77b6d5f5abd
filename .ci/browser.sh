#!/usr/bin/env bash
# The web clients (/console/, /scan/) in Debian's chromium through chromium-driver, against
# the release binary. Installs what is missing, builds the release binary once, runs
# tests/browser, prints its time. Screenshots land in target/browser-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
# A Chinese font, or the screenshots show the pages' Chinese as empty boxes.
{ command -v fc-list >/dev/null && fc-list :lang=zh | grep -q .; } || missing+=(fonts-wqy-microhei)
if [ ${#missing[@]} -gt 0 ]; then
  echo "browser: installing ${missing[*]}"
  as_root apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== browser: cargo build-release (the service and the examples, shared with the rehearsal)"
cargo build-release
echo "== browser: cargo test --test browser"
# One test at a time: each starts the service and a chromium or two.
cargo test --locked --test browser -- --ignored --test-threads=1 --nocapture
echo "browser: [$(( $(date +%s) - started )) s] web clients passed in chromium; screenshots in target/browser-screenshots/"

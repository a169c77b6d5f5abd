#!/usr/bin/env bash
# The OpenAPI contract checked against the real binary (issue 12, STYLE 14):
#  1. openapi-spec-validator on the committed openapi/openapi.json, and the binary serves
#     exactly that document;
#  2. schemathesis 4 against the binary's /openapi.json as four clients: anonymous, a
#     talent (WeChat sign-in through demo mode's stand-in), merchant staff and a super
#     admin (the demo accounts), every check, phases examples, coverage, fuzzing and
#     stateful. .ci/schemathesis.toml lists the few checks turned off for an operation,
#     each with its reason.
# Exits non-zero on any failure. ST_EXAMPLES (default 5) bounds the cases per operation
# and phase, so the whole script stays within about six minutes on the 2-core machine.
# ZHUGE_BIN runs another build of the binary (a debug one, say) instead of the release one.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
examples=${ST_EXAMPLES:-5}
bin=${ZHUGE_BIN:-target/release/zhuge-card}

need() { python3 -m pip show "$1" >/dev/null 2>&1 || python3 -m pip install -q "$2"; }
need schemathesis 'schemathesis>=4.32,<5'
need openapi-spec-validator 'openapi-spec-validator>=0.7'

# A release build is shared with the benchmarks: reuse it unless the sources are newer.
if [ -z "${ZHUGE_BIN:-}" ] && { [ ! -x "$bin" ] || [ -n "$(find src entity migration Cargo.toml Cargo.lock -newer "$bin" -print -quit)" ]; }; then
  echo "st: cargo build-release"
  cargo build-release
fi

echo "== openapi-spec-validator openapi/openapi.json"
openapi-spec-validator openapi/openapi.json

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
# Demo mode: seeded accounts, partners and a talent with a card, and WeChat's servers
# played by the stand-in on the same server, so the talent signs in as the mini-program does.
env -i PATH="$PATH" HOME="$HOME" ZHUGE_DATA_DIR="$work/data" ZHUGE_LISTEN="127.0.0.1:$port" RUST_LOG=warn \
  "$bin" serve --demo >"$work/service.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/service.log"; echo "st: FAILED: the service exited" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "$base/openapi.json" -o "$work/served.json"
python3 - "$work/served.json" openapi/openapi.json <<'EOF' || { echo "st: FAILED: $bin serves another document than openapi/openapi.json (a stale build?)" >&2; exit 1; }
import json, sys
served, committed = (json.load(open(p)) for p in sys.argv[1:])
sys.exit(served != committed)
EOF

mkdir -p target/schemathesis
failed=()
for role in anonymous talent staff admin; do
  echo "== schemathesis as $role"
  role_started=$(date +%s)
  if ! ZG_BASE="$base" ZG_ROLE="$role" SCHEMATHESIS_HOOKS=schemathesis_auth PYTHONPATH=.ci \
    schemathesis --no-color --config-file .ci/schemathesis.toml run "$base/openapi.json" \
      --checks all --phases examples,coverage,fuzzing,stateful --max-examples "$examples" \
      --workers 1 --seed 12 --request-timeout 20 --no-shrink \
      --report junit --report-junit-path "target/schemathesis/$role.xml" 2>&1 | tee "$work/$role.txt" | tail -n 40; then
    failed+=("$role")
    # The failures in full (the tail above may have cut them).
    python3 - "target/schemathesis/$role.xml" <<'EOF' || true
import re, sys
for name, text in re.findall(r'<testcase[^>]*name="([^"]*)"[^>]*>\s*<(?:failure|error)[^>]*>(.*?)</(?:failure|error)>', open(sys.argv[1]).read(), re.S):
    print(f"--- {name}\n{text[:3000]}")
EOF
  fi
  echo "st: $role took $(( $(date +%s) - role_started )) s"
done

echo "st: [$(( $(date +%s) - started )) s] schemathesis done"
if [ ${#failed[@]} -gt 0 ]; then
  echo "st: FAILED for: ${failed[*]} (reports in target/schemathesis/)" >&2
  exit 1
fi
echo "st: the contract holds for every role"

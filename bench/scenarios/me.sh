# Prepares an authenticated client: an operator account and its access token.
BENCH_USER="bench.op.$RANDOM"
printf 'Bench-password-2026\n' | "$BIN" create-admin --username "$BENCH_USER" --password-stdin --role operator >/dev/null
TOKEN=$(curl -sf -H 'content-type: application/json' \
  -d "{\"username\":\"$BENCH_USER\",\"password\":\"Bench-password-2026\"}" \
  "$BASE/api/v1/auth/password/login" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
WRK_ARGS=(-H "Authorization: Bearer $TOKEN")

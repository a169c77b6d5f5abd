# POST /merchant/verify with a fresh token per request, as real scans are: demo data, the
# demo staff member, and tokens minted in advance with the service's keys (valid 60 s).
"$BIN" seed-demo >/dev/null
STAFF=$(curl -sf -H 'content-type: application/json' -d '{"username":"demo.staff","password":"Demo-staff-2026"}' \
  "$BASE/api/v1/auth/password/login" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
mkdir -p bench/out
target/release/examples/mint_qr 150000 > bench/out/tokens.txt
WRK_ARGS=(-H "Authorization: Bearer $STAFF")
NO_WARMUP=1
COMPARE_PGBENCH=insert

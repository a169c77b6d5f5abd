# POST /merchant/verify with a fresh token per request, as real scans are: demo data, the
# demo staff member, and tokens minted in advance with the service's keys (valid 60 s).
"$BIN" seed-demo >/dev/null
STAFF=$(curl -sf -H 'content-type: application/json' -d '{"username":"demo.staff","password":"Demo-staff-2026"}' \
  "$BASE/api/v1/auth/password/login" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
mkdir -p bench/out
# One token per request: 20 000 a second of the run (at least 150 000), so that a fast
# machine never runs out and starts replaying them (409 qr_replayed, counted as errors).
seconds=${DURATION%s}; [[ "$seconds" =~ ^[0-9]+$ ]] || seconds=15
tokens=$(( seconds * 20000 )); [ "$tokens" -ge 150000 ] || tokens=150000
target/release/examples/mint_qr "$tokens" > bench/out/tokens.txt
WRK_ARGS=(-H "Authorization: Bearer $STAFF")
NO_WARMUP=1
COMPARE_PGBENCH=insert

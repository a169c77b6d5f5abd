# POST /merchant/redemptions over distinct cards, each with its own Idempotency-Key, at the
# demo hospital's yearly benefit. Prepared in SQL (it is the redemption being measured, not
# the scans before it): 100 000 talents with active cards and an open visit each.
"$BIN" seed-demo >/dev/null
STAFF=$(curl -sf -H 'content-type: application/json' -d '{"username":"demo.staff","password":"Demo-staff-2026"}' \
  "$BASE/api/v1/auth/password/login" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
mkdir -p bench/out
psql "$DATABASE_URL" -qAt -v ON_ERROR_STOP=1 >bench/out/redemptions.txt <<'SQL'
CREATE TEMP TABLE bench AS
SELECT gen_random_uuid() AS user_id, gen_random_uuid() AS card_id, gen_random_uuid() AS visit_id, n
  FROM generate_series(1, 100000) AS n;
INSERT INTO users (id, role, status, created_at, updated_at)
SELECT user_id, 'talent', 'active', now(), now() FROM bench;
INSERT INTO cards (id, card_no, user_id, holder_name_enc, holder_masked, name_hash, id_number_enc, id_hash,
                   tier, category, status, valid_from, valid_until, created_at, updated_at)
SELECT card_id, 'BN' || lpad(n::text, 12, '0'), user_id, 'bench', '测*试', md5(n::text), 'bench', md5('id' || n),
       'B', 'sci_tech', 'active', now() - interval '1 day', now() + interval '1 year', now(), now() FROM bench;
INSERT INTO visits (id, card_id, partner_id, staff_id, nonce, created_at, expires_at)
SELECT b.visit_id, b.card_id, u.partner_id, u.id, 'bench' || b.n, now(), now() + interval '30 minutes'
  FROM bench b, users u WHERE u.username = 'demo.staff';
ANALYZE;
-- One line per visit: visit id, then the benefit (the partner's every-tier yearly benefit).
SELECT b.visit_id || ' ' || bf.id
  FROM bench b, users u JOIN benefits bf ON bf.partner_id = u.partner_id AND bf.tiers = 'ABCDE'
 WHERE u.username = 'demo.staff'
 ORDER BY b.n;
SQL
# Start measuring with the preparation's pages on disk, as pgbench is measured.
psql "$DATABASE_URL" -qc CHECKPOINT
WRK_ARGS=(-H "Authorization: Bearer $STAFF")
NO_WARMUP=1
COMPARE_PGBENCH=tpcb

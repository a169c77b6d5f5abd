-- The least a scan costs PostgreSQL (issue 15): one durable single-row write per
-- transaction, a fresh random key, INSERT … ON CONFLICT DO NOTHING. bench/run.sh creates
-- the table: nonces (nonce text PRIMARY KEY, at timestamptz NOT NULL).
INSERT INTO nonces (nonce, at) VALUES (gen_random_uuid()::text, now()) ON CONFLICT DO NOTHING;

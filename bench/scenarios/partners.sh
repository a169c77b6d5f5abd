# City-scale catalogue: 10 000 partners over the 13 districts, 50 000 benefits.
psql "$DATABASE_URL" -q <<'SQL'
INSERT INTO partners (id, name, category, district, address, lat, lng, phone, opening_hours, description, status, created_at, updated_at)
SELECT gen_random_uuid(),
       '南阳合作单位' || i,
       (ARRAY['hospital','school','apartment','scenic','transport','finance','culture','sport','elderly_care','service_center','other'])[1 + i % 11],
       (ARRAY['宛城区','卧龙区','南召县','方城县','西峡县','镇平县','内乡县','淅川县','社旗县','唐河县','新野县','桐柏县','邓州市'])[1 + i % 13],
       '南阳市人民路 ' || i || ' 号', 32.6 + (i % 100) * 0.008, 112.2 + (i / 100) * 0.008,
       '0377-6' || lpad(i::text, 7, '0'), '08:00-18:00', '为诸葛英才卡持卡人才提供服务', 'active', now(), now()
FROM generate_series(1, 10000) AS i;
INSERT INTO benefits (id, partner_id, title, description, tiers, categories, quota, period, valid_from, valid_until, status, offline_ok, created_at, updated_at)
SELECT gen_random_uuid(), p.id, '权益 ' || k, '持卡享受优惠',
       (ARRAY['ABC','ABCDE','AB','CDE','E'])[1 + k], '', 1 + k, (ARRAY['day','week','month','year','lifetime'])[1 + k],
       now() - interval '1 day', NULL, 'active', k % 2 = 0, now(), now()
FROM partners p CROSS JOIN generate_series(0, 4) AS k;
ANALYZE partners; ANALYZE benefits;
SQL

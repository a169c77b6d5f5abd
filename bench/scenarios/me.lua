-- An authenticated GET /api/v1/me: token verification, the session check (Redis) and a
-- primary-key read of the account.
wrk.path = "/api/v1/me"
dofile("bench/report.lua")

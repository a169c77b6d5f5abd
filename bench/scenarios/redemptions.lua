-- POST /merchant/redemptions, each request on its own prepared visit (one distinct card
-- each) with a fresh Idempotency-Key.
local visits = {}
for line in io.lines("bench/out/redemptions.txt") do
  local visit, benefit = line:match("^(%S+) (%S+)$")
  if visit then visits[#visits + 1] = '{"visit_id":"' .. visit .. '","benefit_id":"' .. benefit .. '"}' end
end
dofile("bench/stride.lua")
local sent = 0
function request()
  local body = visits[next_index(#visits)]
  sent = sent + 1
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Idempotency-Key"] = "bench-" .. id .. "-" .. sent
  return wrk.format("POST", "/api/v1/merchant/redemptions", nil, body)
end
dofile("bench/report.lua")
report_first_failure(201)

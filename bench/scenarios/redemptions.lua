-- Each wrk thread walks its own stride of the prepared visits (one distinct card each), with
-- a fresh Idempotency-Key per request.
local visits = {}
for line in io.lines("bench/out/redemptions.txt") do
  local visit, benefit = line:match("^(%S+) (%S+)$")
  if visit then visits[#visits + 1] = '{"visit_id":"' .. visit .. '","benefit_id":"' .. benefit .. '"}' end
end
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
local i, step
function init(args)
  i = id + 1
  step = tonumber(os.getenv("THREADS") or "2")
end
function request()
  local body = visits[((i - 1) % #visits) + 1]
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Idempotency-Key"] = "bench-" .. id .. "-" .. i
  i = i + step
  return wrk.format("POST", "/api/v1/merchant/redemptions", nil, body)
end
dofile("bench/report.lua")

function response(status, headers, body)
  if status ~= 201 and not reported then
    reported = true
    io.stderr:write("first non-201: " .. status .. " " .. body .. "\n")
  end
end

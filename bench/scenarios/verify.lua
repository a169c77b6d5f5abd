-- POST /merchant/verify, each request with its own pre-minted token.
local tokens = {}
for line in io.lines(os.getenv("TOKENS") or "bench/out/tokens.txt") do tokens[#tokens + 1] = line end
dofile("bench/stride.lua")
function request()
  local t = tokens[next_index(#tokens)]
  -- nil headers: wrk.headers, which carry -H Authorization, plus the content type.
  wrk.headers["Content-Type"] = "application/json"
  return wrk.format("POST", "/api/v1/merchant/verify", nil, '{"qr":"' .. t .. '"}')
end
dofile("bench/report.lua")
report_first_failure(200)

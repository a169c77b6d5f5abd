-- Each wrk thread walks its own stride of the pre-minted tokens, so none is sent twice.
local tokens = {}
for line in io.lines("bench/out/tokens.txt") do tokens[#tokens + 1] = line end
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
local i, step
function init(args)
  i = id + 1
  step = tonumber(os.getenv("THREADS") or "2")
end
function request()
  -- Past the end the tokens repeat and are refused as replays (counted as non-2xx).
  local t = tokens[((i - 1) % #tokens) + 1]
  i = i + step
  -- nil headers: wrk.headers, which carry -H Authorization, plus the content type.
  wrk.headers["Content-Type"] = "application/json"
  return wrk.format("POST", "/api/v1/merchant/verify", nil, '{"qr":"' .. t .. '"}')
end
dofile("bench/report.lua")

function response(status, headers, body)
  if status ~= 200 and not reported then
    reported = true
    io.stderr:write("first non-200: " .. status .. " " .. body .. "\n")
  end
end

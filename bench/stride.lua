-- Shared by single-use scenarios: each wrk thread walks its own stride of a prepared list,
-- so no item is sent twice (past the end the list repeats). Call next_index() per request;
-- report_first_failure(expected) logs the first unexpected answer.
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
function next_index(n)
  local at = ((i - 1) % n) + 1
  i = i + step
  return at
end
function report_first_failure(expected)
  function response(status, headers, body)
    if status ~= expected and not reported then
      reported = true
      io.stderr:write("first non-" .. expected .. ": " .. status .. " " .. body .. "\n")
    end
  end
end

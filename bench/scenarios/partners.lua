-- GET /api/v1/partners as the mini-program browses it: plain, by category, by district,
-- by tier, and near a few places in the city (each query cached after its first miss).
local paths = {
  "/api/v1/partners",
  "/api/v1/partners?category=hospital",
  "/api/v1/partners?district=%E5%8D%A7%E9%BE%99%E5%8C%BA",
  "/api/v1/partners?tier=E&limit=50",
  "/api/v1/partners?near=32.99,112.53",
  "/api/v1/partners?near=33.10,112.40&category=school",
}
local i = 0
function request()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
dofile("bench/report.lua")

-- A GET of the path in the environment variable GET_PATH (bench/city.sh sets it per
-- endpoint), with wrk's -H headers (the bearer token).
wrk.path = os.getenv("GET_PATH")
dofile("bench/report.lua")

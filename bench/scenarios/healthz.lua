-- Static baseline: the same binary answering a fixed JSON body.
wrk.path = "/healthz"
dofile("bench/report.lua")

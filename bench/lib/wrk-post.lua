-- wrk script for row 4: every request POSTs a small JSON body (a background job); the result
-- line is wrk-report.lua's.
wrk.method = "POST"
wrk.body = '{"job":"bench","payload":"0123456789abcdef"}'
wrk.headers["Content-Type"] = "application/json"
dofile(os.getenv("BENCH_LIB") .. "/wrk-report.lua")

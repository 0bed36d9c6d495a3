-- wrk script for scripts/bench.py: keep-alive requests over a corpus, summary as one JSON line.
--
--   wrk -t1 -c64 -d5s --latency -s scripts/bench_post.lua http://127.0.0.1:PORT -- post CORPUS
--   wrk -t1 -c64 -d5s --latency -s scripts/bench_post.lua http://127.0.0.1:PORT -- get
--
-- "post": POST /calculate with form-encoded bodies read from CORPUS (one `expr=...` per line,
-- already percent-encoded), cycling through them; each wrk thread starts at a different line.
-- "get": GET / (the page). done() prints `BENCH_JSON {...}` with latencies in microseconds.

local requests = {}
local index = 0

function init(args)
  local mode = args[1] or "get"
  if mode == "post" then
    local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
    for line in io.lines(args[2]) do
      if #line > 0 then
        requests[#requests + 1] = wrk.format("POST", "/calculate", headers, line)
      end
    end
  else
    requests[1] = wrk.format("GET", "/")
  end
  assert(#requests > 0, "empty corpus")
  index = math.random(#requests) - 1
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, ' ..
    '"p99.9": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end

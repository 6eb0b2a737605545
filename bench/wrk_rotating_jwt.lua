-- wrk script for bench/perf.py: every request carries a token of its own (the service refuses a
-- replayed jti), read from a file of pre-signed tokens, one a line, so signing costs the load
-- generator nothing. Arguments after `--`: tokens file, body file, path ("" for a GET without
-- token or body). Prints one line "RESULT {json}" with the figures perf.py reads.

local tokens = {}
local next_token = 1
local body = nil
local path = "/"

function init(args)
  path = args[3] or "/"
  if args[1] ~= nil and args[1] ~= "" then
    for line in io.lines(args[1]) do
      tokens[#tokens + 1] = line
    end
  end
  if args[2] ~= nil and args[2] ~= "" then
    local file = assert(io.open(args[2], "rb"))
    body = file:read("*a")
    file:close()
  end
end

function request()
  if body == nil then
    return wrk.format("GET", path)
  end
  local token = tokens[next_token]
  next_token = next_token + 1
  if token == nil then
    -- Out of tokens: a request without one is refused (401) and counted as an error, never replayed.
    token = "exhausted"
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                   ["Authorization"] = "Bearer " .. token}, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'RESULT {"rps": %.2f, "requests": %d, "p50": %d, "p95": %d, "p99": %d, "errors": %d}\n',
    summary.requests / (summary.duration / 1e6), summary.requests,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), errors))
end

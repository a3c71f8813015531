-- wrk script for the origin's redirect path: authorized blob GETs (Basic
-- auth, like a docker client after login) cycling over the digests in
-- $BLOBS (space-separated /v2/<repo>/blobs/<digest> paths). Every answer
-- must be a 307 to the user's cache; anything else is counted and printed.
local paths = {}
for p in string.gmatch(os.getenv("BLOBS") or "", "%S+") do
  paths[#paths + 1] = p
end
wrk.method = "GET"
wrk.headers["Authorization"] = "Basic " .. os.getenv("AUTH")

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  redirects = 0
  others = 0
end

function request()
  n = n + 1
  return wrk.format(nil, paths[(n + id) % #paths + 1])
end

function response(status, headers, body)
  if status == 307 and headers["Location"] ~= nil then
    redirects = redirects + 1
  else
    others = others + 1
  end
end

function done(summary, latency, requests)
  local r, o = 0, 0
  for _, t in ipairs(threads) do
    r = r + t:get("redirects")
    o = o + t:get("others")
  end
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f redirects=%d others=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, r, o, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end

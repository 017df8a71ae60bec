-- wrk script of the feedback ingest and projection lag benches: a new response (and Idempotency-Key,
-- when KEY=1) per request, shaped as bench/feedback_ingest.py `_bodies`, at most one request per
-- DELAY_MS per connection. Env: SID (survey id), TAG, KEY, DELAY_MS.
local counter = 0
local sid, tag, key = os.getenv("SID"), os.getenv("TAG"), os.getenv("KEY") == "1"
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")

request = function()
  counter = counter + 1
  local id = tag .. "-" .. counter .. "-" .. math.random(1, 1000000000)
  local comment = (counter % 3 == 0) and '"Fast delivery, friendly staff."' or "null"
  local body = '{"survey_id":"' .. sid .. '","response_id":"' .. id
    .. '","customer_external_id":"C-' .. (counter % 5000) .. '","touchpoint_key":"tp-' .. (counter % 50)
    .. '","channel":"web","answers":{"recommend":' .. (counter % 11) .. ',"reason":"ok"},"comment":' .. comment .. '}'
  wrk.headers["Content-Type"] = "application/json"
  if key then wrk.headers["Idempotency-Key"] = id end
  return wrk.format("POST", nil, nil, body)
end

delay = function()
  return delay_ms
end

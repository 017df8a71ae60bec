-- wrk script of the projection lag bench: a bulk call of BULK new interactions per request, at most
-- one request per DELAY_MS per connection. Env: BULK, TAG, DELAY_MS.
local counter = 0
local bulk, tag, delay_ms = tonumber(os.getenv("BULK")), os.getenv("TAG"), tonumber(os.getenv("DELAY_MS") or "0")
local keys = {"ad", "shop", "app", "support"}

request = function()
  counter = counter + 1
  local items = {}
  for i = 1, bulk do
    local n = counter * bulk + i
    items[i] = '{"event_id":"' .. tag .. '-' .. counter .. '-' .. i .. '-' .. math.random(1, 1000000000)
      .. '","customer":"c-' .. (n % 20000) .. '","touchpoint":"' .. keys[(n % 4) + 1]
      .. '","occurred_at":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. '"}'
  end
  wrk.headers["Content-Type"] = "application/json"
  return wrk.format("POST", nil, nil, '{"items":[' .. table.concat(items, ",") .. ']}')
end

delay = function()
  return delay_ms
end

-- Milliseconds on the Redis clock, so every replica agrees on every time stored.
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

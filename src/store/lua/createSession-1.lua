--[[
  Creates a session hash that expires on its own, so no sweeper is needed.

  KEYS[1]  session hash            rz:{<id>}
  ARGV[1]  family
  ARGV[2]  content type
  ARGV[3]  payload
  ARGV[4]  time to live, ms
  ARGV[5]  per-session ETag salt

  Returns {created_ms, expires_ms}, or 0 when the id is already taken.
  Times come from the Redis clock so every replica agrees on them.
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'f', ARGV[1], 't', ARGV[2], 'd', ARGV[3], 'r', 1, 'g', ARGV[5], 'c', now, 'm', now,
  'e', expires)
redis.call('PEXPIREAT', KEYS[1], expires)
return {now, expires}

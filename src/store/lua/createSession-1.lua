--[[
  Creates a session that expires on its own, so no sweeper is needed.

  KEYS[1]  session string            rz:{<id>}
  ARGV[1]  family
  ARGV[2]  content type
  ARGV[3]  payload
  ARGV[4]  time to live, ms
  ARGV[5]  per-session ETag salt

  The session is ONE string, "<family> <rev> <salt> <created> <modified> <expires> <type>\n<payload>"
  (see keys.ts): a hash costs Redis ~800 bytes more per session once the payload outgrows listpack.

  Returns {created_ms, expires_ms}, or 0 when the id is already taken.
  Times come from the Redis clock so every replica agrees on them.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[4])
local head = string.format('%s 1 %s %d %d %d %s\n', ARGV[1], ARGV[5], now, now, expires, ARGV[2])
if not redis.call('SET', KEYS[1], head .. ARGV[3], 'NX', 'PXAT', expires) then
  return 0
end
return {now, expires}

--[[
  Takes one slot of a session cap, or refuses when the cap is full. A cap is one sorted set whose
  members are session ids scored by the time their slot frees itself, so expired sessions leave
  without a sweeper (they are pruned here) and a full set never evicts a live member. One key per
  script: the global set and each address set may sit in different Redis Cluster slots.

  KEYS[1]  the cap's sorted set
  ARGV[1]  session id
  ARGV[2]  the cap (most members)
  ARGV[3]  how long the slot is held, ms (the session's lifetime and a margin)

  Returns {1, 0} when taken, {0, ms until the oldest slot frees} when full.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) - now}
end
local hold = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + hold, ARGV[1])
-- The set lives as long as its longest slot, so an address that stops creating leaves nothing behind.
if redis.call('PTTL', KEYS[1]) < hold then
  redis.call('PEXPIRE', KEYS[1], hold)
end
return {1, 0}

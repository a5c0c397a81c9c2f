--[[
  Redis Cluster, step 1 of a create: takes the session's cap slots in the caps' own slot, before the
  session exists (so no session can exist uncounted), and journals the claim so that giving it back
  (releaseClaim-4.lua) happens at most once, whatever is retried.

  KEYS[1]  caps hash                 rz:{:caps}
  KEYS[2]  caps by address           rz:{:caps}:addr
  KEYS[3]  journal (sorted set)      rz:{:caps}:journal
  KEYS[4]  journal details (hash)    rz:{:caps}:journal:details
  ARGV[1]  session id
  ARGV[2]  owner (client address; '-' for none)
  ARGV[3]  time to live, ms
  ARGV[4]  global cap (0: none)
  ARGV[5]  per-address cap (0: none)
  ARGV[6]  how long journal entries are kept, ms

  Returns {1, created_ms, expires_ms}, or {0, 'global'|'address', retry_after_ms}. Run again for the
  same id (a client re-sending it after a dropped connection), it answers the journalled claim.
]]
--- @include "time"
--- @include "caps"
--- @include "journal"

local now = nowMs()
local nowSec = math.floor(now / 1000)
local owner = ARGV[2]
local claimed = redis.call('HGET', KEYS[4], 'c:' .. ARGV[1])
if claimed then
  local created, expires = string.match(claimed, '^%S+ (%d+) (%d+)$')
  return { 1, tonumber(created), tonumber(expires) }
end
local expires = now + tonumber(ARGV[3])
local expSec = math.ceil(expires / 1000)
local refused, claim = capsCheck(KEYS[1], KEYS[2], owner, tonumber(ARGV[4]), tonumber(ARGV[5]), now, nowSec, expSec)
if refused then
  return refused
end

-- The counts first: capsTake's first write is an HSET, which Redis refuses when out of memory, so a
-- claim it refuses has changed nothing (capsCheck wrote nothing unless a second had passed, and then
-- an HSET too). journalPrune's ZREM would not be refused, and every write after it then goes through.
capsTake(KEYS[1], KEYS[2], owner, claim, expSec, nowSec)
journalPrune(KEYS[3], KEYS[4], now)
journalAdd(KEYS[3], KEYS[4], 'c:' .. ARGV[1], now + tonumber(ARGV[6]), owner .. ' ' .. now .. ' ' .. expires)
return { 1, now, expires }

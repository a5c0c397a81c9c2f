--[[
  Creates a session that expires on its own, taking its cap slots in the same atomic step: a full
  cap refuses (it never evicts), and no session can exist that the caps do not count.
  Single Redis node or Sentinel; on Cluster the caps live in another slot (claimSlot-4.lua).

  KEYS[1]  session string            rz:{<id>}
  KEYS[2]  caps hash                 rz:{:caps}
  KEYS[3]  caps by address           rz:{:caps}:addr
  ARGV[1]  family
  ARGV[2]  content type
  ARGV[3]  payload
  ARGV[4]  time to live, ms
  ARGV[5]  per-session ETag salt
  ARGV[6]  owner (client address; '-' for none)
  ARGV[7]  global cap (0: none)
  ARGV[8]  per-address cap (0: none)

  Returns {1, created_ms, expires_ms}; {0, 'global'|'address', retry_after_ms} when a cap is full;
  {-1} when the id is taken. Run again for a session it made already (same salt: a client re-sending
  it after a lost answer), it answers that session and counts nothing twice.
]]
--- @include "time"
--- @include "session"
--- @include "caps"

-- The answer when the id is not free: the session this very create made already (same salt: a
-- client re-sending it after a lost answer), counting nothing twice, or {-1} for another session;
-- nil for none (a tombstone reads as none). Read only then, the rare case.
local function existingAnswer()
  local existing = readSession(redis.call('GET', KEYS[1]))
  if not existing then
    return nil
  end
  if existing.salt == ARGV[5] then
    return { 1, existing.created, existing.expires }
  end
  return { -1 }
end

local now = nowMs()
local nowSec = math.floor(now / 1000)
local owner = ARGV[6]
local expires = now + tonumber(ARGV[4])
local expSec = math.ceil(expires / 1000)
local refused, claim = capsCheck(KEYS[2], KEYS[3], owner, tonumber(ARGV[7]), tonumber(ARGV[8]), now, nowSec, expSec)
if refused then
  -- A full cap refuses a new session, never the answer to one that exists.
  return existingAnswer() or refused
end

local head = newSessionHead(owner, ARGV[1], ARGV[5], now, expires, ARGV[2])
if not redis.call('SET', KEYS[1], head .. ARGV[3], 'NX', 'PXAT', string.format('%d', expires)) then
  return existingAnswer() or { -1 }
end
capsTake(KEYS[2], KEYS[3], owner, claim, expSec, nowSec)
return { 1, now, expires }

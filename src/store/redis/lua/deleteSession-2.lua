#!lua flags=allow-oom
--[[
  Deletes a session and its transaction records and wakes anyone waiting on it. On Redis Cluster,
  where the caps live in a slot of their own: the caller then frees the slots with releaseSlot-4.lua,
  using the owner and expiry returned here. In place of the session it leaves a tombstone,
  "~<owner> <expires>", which every read takes for "not found": if this answer is lost, the replica
  finds there what it needs to free the slots all the same.

  KEYS[1]  session string            rz:{<id>}
  KEYS[2]  transaction record hash   rz:{<id>}:txn
  ARGV[1]  family the caller speaks (another family's session is "not found")
  ARGV[2]  wake-up channel
  ARGV[3]  how long the tombstone is kept, ms

  Returns {1, owner, expires_ms} when deleted; {0} when not found; {0, owner, expires_ms} when the
  session was deleted already and its tombstone says which slots that delete owes (perhaps this very
  request, sent again after its answer was lost: its release is journalled, so it frees once).
  A session of the previous release was never counted: its expiry is given as 0, freeing nothing.
]]
--- @include "session"

local value = redis.call('GET', KEYS[1])
local s = readSession(value)
if not s then
  local owner, expires = string.match(value or '', '^~(%S*) (%d+)$')
  if owner then
    return { 0, owner, tonumber(expires) }
  end
  return { 0 }
end
if s.family ~= ARGV[1] then
  return { 0 }
end
local expires = s.counted and s.expires or 0
redis.call('SET', KEYS[1], '~' .. s.owner .. ' ' .. expires, 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('SPUBLISH', ARGV[2], 'deleted')
return { 1, s.owner, expires }

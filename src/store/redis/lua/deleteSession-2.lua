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

  Returns {1, owner, expires_ms} when deleted, {0} when not found.
]]
--- @include "session"

local s = readSession(redis.call('GET', KEYS[1]))
if not s or s.family ~= ARGV[1] then
  return { 0 }
end
redis.call('SET', KEYS[1], '~' .. s.owner .. ' ' .. s.expires, 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('SPUBLISH', ARGV[2], 'deleted')
return { 1, s.owner, s.expires }

#!lua flags=allow-oom
--[[
  Deletes a session and its transaction records, frees its cap slots and wakes anyone waiting on
  it, in one atomic step. Single Redis node or Sentinel (Cluster: deleteSession-2.lua, then
  releaseSlot-4.lua in the caps' slot).

  KEYS[1]  session string            rz:{<id>}
  KEYS[2]  transaction record hash   rz:{<id>}:txn
  KEYS[3]  caps hash                 rz:{:caps}
  KEYS[4]  caps by address           rz:{:caps}:addr
  ARGV[1]  family the caller speaks (another family's session is "not found")
  ARGV[2]  wake-up channel

  Returns 1 when deleted, 0 when not found.
]]
--- @include "time"
--- @include "session"
--- @include "caps"

local s = readSession(redis.call('GET', KEYS[1]))
if not s or s.family ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SPUBLISH', ARGV[2], 'deleted')
local nowSec = math.floor(nowMs() / 1000)
capsPrune(KEYS[3], nowSec)
if s.counted then
  capsRelease(KEYS[3], KEYS[4], s.owner, math.ceil(s.expires / 1000), nowSec)
end
return 1

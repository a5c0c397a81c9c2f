#!lua flags=allow-oom
--[[
  Redis Cluster, step 2 of a delete: frees the slots of a session deleteSession-2.lua removed. The
  journal remembers the release for a while, so a retry after a lost answer frees nothing twice.

  KEYS[1]  caps hash                 rz:{:caps}
  KEYS[2]  caps by address           rz:{:caps}:addr
  KEYS[3]  journal                   rz:{:caps}:journal
  KEYS[4]  journal details           rz:{:caps}:journal:details
  ARGV[1]  session id
  ARGV[2]  owner
  ARGV[3]  expires, ms
  ARGV[4]  how long journal entries are kept, ms

  Returns 1 when freed, 0 when freed before.
]]
--- @include "time"
--- @include "caps"
--- @include "journal"

local now = nowMs()
local nowSec = math.floor(now / 1000)
capsPrune(KEYS[1], nowSec)
journalPrune(KEYS[3], KEYS[4], now)
if not journalAdd(KEYS[3], KEYS[4], 'r:' .. ARGV[1], now + tonumber(ARGV[4]), '') then
  return 0
end
-- A session whose claim is still journalled was counted; either way its slots are freed once.
journalTake(KEYS[3], KEYS[4], 'c:' .. ARGV[1])
capsRelease(KEYS[1], KEYS[2], ARGV[2], math.ceil(tonumber(ARGV[3]) / 1000), nowSec)
return 1

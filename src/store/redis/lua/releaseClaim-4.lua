#!lua flags=allow-oom
--[[
  Redis Cluster: gives back the slots claimed for a session that was never created (its create failed,
  was refused, or came too late). Only a journalled claim is given back, and only once, so a retry
  after a lost answer can never free a slot twice; the claim's details come from the journal, so the
  caller needs nothing but the id, even when the claim's own answer was lost.

  KEYS[1]  caps hash                 rz:{:caps}
  KEYS[2]  caps by address           rz:{:caps}:addr
  KEYS[3]  journal                   rz:{:caps}:journal
  KEYS[4]  journal details           rz:{:caps}:journal:details
  ARGV[1]  session id

  Returns 1 when given back, 0 when there was nothing to give back.
]]
--- @include "time"
--- @include "caps"
--- @include "journal"

local nowSec = math.floor(nowMs() / 1000)
capsPrune(KEYS[1], nowSec)
local claim = journalTake(KEYS[3], KEYS[4], 'c:' .. ARGV[1])
if not claim then
  return 0
end
local owner, expires = string.match(claim, '^(%S+) %d+ (%d+)$')
capsRelease(KEYS[1], KEYS[2], owner, math.ceil(tonumber(expires) / 1000), nowSec)
return 1

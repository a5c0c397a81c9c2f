--[[
  Redis Cluster, step 2 of a create: the session itself, in its own slot, with the times its claim
  (claimSlot-3.lua) fixed. After the claim's deadline it refuses, so a create delayed past the point
  where the replica gives the claim back can never land uncounted.

  KEYS[1]  session string            rz:{<id>}
  ARGV[1]  family
  ARGV[2]  content type
  ARGV[3]  payload
  ARGV[4]  created, ms
  ARGV[5]  expires, ms
  ARGV[6]  per-session ETag salt
  ARGV[7]  owner
  ARGV[8]  deadline, ms

  Returns {1} when created, {-1} when the id is taken, {-2} when the deadline has passed.
]]
--- @include "time"
--- @include "session"

if nowMs() > tonumber(ARGV[8]) then
  return { -2 }
end
local expires = tonumber(ARGV[5])
local head = sessionHead({ family = ARGV[1], rev = 1, salt = ARGV[6], created = tonumber(ARGV[4]),
  modified = tonumber(ARGV[4]), expires = expires, owner = ARGV[7], ctype = ARGV[2] })
if not redis.call('SET', KEYS[1], head .. ARGV[3], 'NX', 'PXAT', expires) then
  return { -1 }
end
return { 1 }

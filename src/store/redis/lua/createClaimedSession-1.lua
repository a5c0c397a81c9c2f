--[[
  Redis Cluster, step 2 of a create: the session itself, in its own slot, with the times its claim
  (claimSlot-4.lua) fixed. It never lands where the replica has put a tombstone (SET NX): that is how
  a replica settling a create it lost track of makes sure it cannot happen later.

  KEYS[1]  session string            rz:{<id>}
  ARGV[1]  family
  ARGV[2]  content type
  ARGV[3]  payload
  ARGV[4]  created, ms
  ARGV[5]  expires, ms
  ARGV[6]  per-session ETag salt
  ARGV[7]  owner

  Returns 1 when created (or created already by this very create, sent again: same salt), -1 when
  the id is taken.
]]
--- @include "session"

local expires = tonumber(ARGV[5])
local head = sessionHead({ family = ARGV[1], rev = 1, salt = ARGV[6], created = tonumber(ARGV[4]),
  modified = tonumber(ARGV[4]), expires = expires, owner = ARGV[7], ctype = ARGV[2] })
if redis.call('SET', KEYS[1], head .. ARGV[3], 'NX', 'PXAT', expires) then
  return 1
end
local existing = readSession(redis.call('GET', KEYS[1]))
if existing and existing.salt == ARGV[6] then
  return 1
end
return -1

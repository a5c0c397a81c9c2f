#!lua flags=allow-oom
--[[
  Redis Cluster: puts a tombstone where a session whose create was lost track of would go, unless
  the session is there (SET NX), so that the create can never land later and its claim can be given
  back. Allowed on a node at its maxmemory: the create it settles is most often one that node
  refused for memory, and refusing this small write too would hold the claim's slot until the
  session would have expired.

  KEYS[1]  session string            rz:{<id>}
  ARGV[1]  tombstone
  ARGV[2]  its life, ms

  Returns 1 when placed, now or by an earlier attempt whose answer was lost (this very tombstone is
  there: the claim is still to be given back, which releaseClaim-4.lua does once however often it is
  asked); 0 when the session (or another tombstone) is there.
]]
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
return 0

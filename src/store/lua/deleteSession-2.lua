--[[
  Deletes a session and its transaction records, and wakes anyone waiting on it.

  KEYS[1]  session string            rz:{<id>}
  KEYS[2]  transaction record hash   rz:{<id>}:txn
  ARGV[1]  family the caller speaks (another family's session is "not found")
  ARGV[2]  wake-up channel

  Returns 1 when deleted, 0 when not found.
]]
local head = redis.call('GETRANGE', KEYS[1], 0, #ARGV[1])
if head ~= ARGV[1] .. ' ' then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SPUBLISH', ARGV[2], 'deleted')
return 1

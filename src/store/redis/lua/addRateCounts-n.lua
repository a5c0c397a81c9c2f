--[[
  Adds a replica's request counts of one rate-budget window, for every address it saw since its last
  call, and answers each address's total over all replicas: one call per interval, however many
  addresses. The window's counts are spread over several hashes by address; the caller names the
  ones this batch touches.

  A batch is added once: its id is recorded in the window's batch hash, and a batch sent again (its
  answer was lost, so the replica cannot tell whether it landed) answers the totals without adding.

  KEYS[1]  the window's batch ids            rz:{:rl}:<budget>:<window start>:batches
  KEYS[2], KEYS[3], ...  the window's count hashes this batch touches  rz:{:rl}:<budget>:<window start>:<bucket>
  ARGV[1]  ms the counts are kept (the rest of the window and a margin)
  ARGV[2]  the batch id ('': added whatever it is)
  ARGV[3], ARGV[4], ARGV[5], ...  key index (1-based), address, count, key index, address, count, ...

  Returns the totals, in order.
]]
-- The first write: a full Redis refuses the script here, before it has changed anything.
local fresh = ARGV[2] == '' or redis.call('HSETNX', KEYS[1], ARGV[2], 1) == 1
local totals = {}
for i = 3, #ARGV, 3 do
  local key = KEYS[tonumber(ARGV[i])]
  if fresh then
    totals[#totals + 1] = redis.call('HINCRBY', key, ARGV[i + 1], ARGV[i + 2])
  else
    totals[#totals + 1] = tonumber(redis.call('HGET', key, ARGV[i + 1])) or 0
  end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return totals

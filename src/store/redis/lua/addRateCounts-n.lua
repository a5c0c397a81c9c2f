--[[
  Adds a replica's request counts of one rate-budget window, for every address it saw since its last
  call, and answers each address's total over all replicas: one call per interval, however many
  addresses. The window's counts are spread over several hashes by address (the keys); the caller
  names the ones this batch touches.

  KEYS[1], KEYS[2], ...  the window's count hashes this batch touches  rz:{:rl}:<budget>:<window start>:<bucket>
  ARGV[1]  ms the counts are kept (the rest of the window and a margin)
  ARGV[2], ARGV[3], ARGV[4], ...  key index (1-based), address, count, key index, address, count, ...

  Returns the totals, in order.
]]
local totals = {}
for i = 2, #ARGV, 3 do
  totals[#totals + 1] = redis.call('HINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return totals

--[[
  Adds a replica's request counts of one rate-budget window, for every address it saw since its last
  call, and answers each address's total over all replicas: one call per interval, however many
  addresses.

  KEYS[1]  the window's counts (hash)  rz:{:rl}:<budget>:<window start>
  ARGV[1]  ms the counts are kept (the rest of the window and a margin)
  ARGV[2], ARGV[3], ...  address, count, address, count, ...

  Returns the totals, in order.
]]
local totals = {}
for i = 2, #ARGV, 2 do
  totals[#totals + 1] = redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return totals

#!lua flags=allow-oom
--[[
  Live sessions and sessions expired so far, store-wide, on the Redis clock (the caps count them).

  KEYS[1]  caps hash                 rz:{:caps}

  Returns {live, expired}.
]]
--- @include "time"
--- @include "caps"

capsPrune(KEYS[1], math.floor(nowMs() / 1000))
local counts = redis.call('HMGET', KEYS[1], 'n', 'x')
return { tonumber(counts[1]) or 0, tonumber(counts[2]) or 0 }

-- Session caps without an entry per session: live sessions are counted per second of expiry, so a
-- count frees itself when its second has passed (no sweeper, nothing per session but a number).
--
--   caps hash        n: live sessions   x: sessions that expired (ever)   p: last second pruned
--                    c: sweep cursor    <second>: sessions expiring in that second
--   by-address hash  <owner>: "<second>:<count> <second>:<count> ..." ascending, future seconds only
--
-- A session expiring at E ms counts in second ceil(E / 1000): its slot frees at most a second after
-- the session itself, never before.

-- Frees the counts of every second that has passed. Its first write is always the HSET of `p`
-- (a command Redis refuses when out of memory): a script that cannot complete then stops before
-- changing anything, and Redis never stops a script once it has written.
local function capsPrune(caps, nowSec)
  local last = tonumber(redis.call('HGET', caps, 'p'))
  redis.call('HSET', caps, 'p', math.max(last or nowSec, nowSec))
  if not last or last >= nowSec then
    return
  end
  local freed = 0
  if nowSec - last > 600 then
    -- Idle for long: cheaper to look at every field than at every second since.
    local flat = redis.call('HGETALL', caps)
    for i = 1, #flat, 2 do
      local sec = tonumber(flat[i])
      if sec and sec <= nowSec then
        freed = freed + tonumber(flat[i + 1])
        redis.call('HDEL', caps, flat[i])
      end
    end
  else
    for sec = last + 1, nowSec do
      local count = redis.call('HGET', caps, sec)
      if count then
        freed = freed + tonumber(count)
        redis.call('HDEL', caps, sec)
      end
    end
  end
  if freed > 0 then
    redis.call('HINCRBY', caps, 'n', -freed)
    redis.call('HINCRBY', caps, 'x', freed)
  end
end

-- An owner's live entries {{second, count}, ...} and their total.
local function capsOwnerEntries(byAddress, owner, nowSec)
  local entries, total = {}, 0
  local raw = redis.call('HGET', byAddress, owner)
  if raw then
    for sec, count in string.gmatch(raw, '(%d+):(%d+)') do
      sec = tonumber(sec)
      if sec > nowSec then
        count = tonumber(count)
        entries[#entries + 1] = { sec, count }
        total = total + count
      end
    end
  end
  return entries, total
end

local function capsWriteOwner(byAddress, owner, entries)
  if #entries == 0 then
    redis.call('HDEL', byAddress, owner)
    return
  end
  local parts = {}
  for i, entry in ipairs(entries) do
    parts[i] = entry[1] .. ':' .. entry[2]
  end
  redis.call('HSET', byAddress, owner, table.concat(parts, ' '))
end

-- The first second from now on that still holds a live session (for Retry-After).
local function capsFirstSecond(caps, nowSec)
  for sec = nowSec + 1, nowSec + 64 do
    if redis.call('HEXISTS', caps, sec) == 1 then
      return sec
    end
  end
  local first
  local flat = redis.call('HGETALL', caps)
  for i = 1, #flat, 2 do
    local sec = tonumber(flat[i])
    if sec and sec > nowSec and (not first or sec < first) then
      first = sec
    end
  end
  return first or nowSec + 1
end

-- nil when one more session fits both caps, else {0, cap, ms until a slot frees}.
local function capsRefusal(caps, entries, ownerTotal, globalCap, ownerCap, now, nowSec)
  if globalCap > 0 and (tonumber(redis.call('HGET', caps, 'n')) or 0) >= globalCap then
    return { 0, 'global', capsFirstSecond(caps, nowSec) * 1000 - now }
  end
  if ownerCap > 0 and ownerTotal >= ownerCap then
    return { 0, 'address', entries[1][1] * 1000 - now }
  end
  return nil
end

-- Counts one more session expiring in second expSec (and for its owner, when tracked).
local function capsCount(caps, byAddress, owner, entries, expSec, tracked)
  redis.call('HINCRBY', caps, 'n', 1)
  redis.call('HINCRBY', caps, expSec, 1)
  if not tracked then
    return
  end
  local at = #entries + 1
  for i, entry in ipairs(entries) do
    if entry[1] == expSec then
      entry[2] = entry[2] + 1
      at = nil
      break
    elseif entry[1] > expSec then
      at = i
      break
    end
  end
  if at then
    table.insert(entries, at, { expSec, 1 })
  end
  capsWriteOwner(byAddress, owner, entries)
end

-- Frees the slots of a session that expires in second expSec (deleted, or never created).
local function capsRelease(caps, byAddress, owner, expSec, nowSec)
  if expSec <= nowSec then
    return -- its second has passed: pruning freed it already
  end
  local count = tonumber(redis.call('HGET', caps, expSec))
  if count and count > 0 then
    if count == 1 then
      redis.call('HDEL', caps, expSec)
    else
      redis.call('HINCRBY', caps, expSec, -1)
    end
    redis.call('HINCRBY', caps, 'n', -1)
  end
  if owner == '-' then
    return
  end
  local entries = capsOwnerEntries(byAddress, owner, nowSec)
  for i, entry in ipairs(entries) do
    if entry[1] == expSec then
      if entry[2] > 1 then
        entry[2] = entry[2] - 1
      else
        table.remove(entries, i)
      end
      capsWriteOwner(byAddress, owner, entries)
      return
    end
  end
end

-- Owners whose sessions all expired and who never came back would stay forever: each create looks
-- at a few more owners (cursor in the caps hash) and drops their past seconds. A small hash is left
-- alone (it is bounded and HSCAN would return all of it each time).
local function capsSweep(caps, byAddress, nowSec, skip)
  if redis.call('HLEN', byAddress) <= 128 then
    return
  end
  local scan = redis.call('HSCAN', byAddress, redis.call('HGET', caps, 'c') or '0', 'COUNT', 4)
  redis.call('HSET', caps, 'c', scan[1])
  local flat = scan[2]
  for i = 1, #flat, 2 do
    local owner = flat[i]
    if owner ~= skip then
      local entries, stale = {}, false
      for sec, count in string.gmatch(flat[i + 1], '(%d+):(%d+)') do
        if tonumber(sec) > nowSec then
          entries[#entries + 1] = { sec, count }
        else
          stale = true
        end
      end
      if stale then
        capsWriteOwner(byAddress, owner, entries)
      end
    end
  end
end

-- What every create does first: prunes, then checks that one more session of `owner` fits both
-- caps. Returns the refusal to answer with (nil when it fits), and what `capsTake` needs.
local function capsCheck(caps, byAddress, owner, globalCap, ownerCap, now, nowSec)
  capsPrune(caps, nowSec)
  local claim = { entries = {}, tracked = ownerCap > 0 and owner ~= '-' }
  local ownerTotal = 0
  if claim.tracked then
    claim.entries, ownerTotal = capsOwnerEntries(byAddress, owner, nowSec)
  end
  return capsRefusal(caps, claim.entries, ownerTotal, globalCap, ownerCap, now, nowSec), claim
end

-- Counts the session `capsCheck` let through, expiring at `expires` ms, and tidies a few owners.
local function capsTake(caps, byAddress, owner, claim, expires, nowSec)
  capsCount(caps, byAddress, owner, claim.entries, math.ceil(expires / 1000), claim.tracked)
  capsSweep(caps, byAddress, nowSec, owner)
end

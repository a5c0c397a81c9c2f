-- Session caps without an entry per session: live sessions are counted per second of expiry, so a
-- count frees itself when its second has passed (no sweeper, nothing per session but a number).
--
--   caps hash        n: live sessions   x: sessions that expired (ever)   p: last second pruned
--                    c: sweep cursor    <second>: sessions expiring in that second
--   by-address hash  <owner>: "<total> <oldest>|<second>:<count> <second>:<count> ..."
--                    newest second first; <total> is the sum of the counts listed and <oldest> at
--                    most the smallest second listed, so while <oldest> is in the future every
--                    second listed is and a create reads and writes the front alone. A list of
--                    up to OWNER_BARE_MAX seconds is written bare, "<second>:<count> ..." oldest
--                    first, as the previous release writes every list; a bare list is read whole,
--                    in any order. (The previous release counts a headed list right too, its
--                    pattern skipping the header, but takes its newest second for the soonest.)
--
-- A session expiring at E ms counts in second ceil(E / 1000): its slot frees at most a second after
-- the session itself, never before.

-- Frees the counts of every second that has passed since the last prune (`p`), and returns the live
-- sessions counted then, and the count of second `second` when one is given (a create's expiry
-- second, always ahead, so no prune touches it). Writes only when a second has passed, and then `p`
-- first (a command Redis refuses when out of memory): a script that cannot complete then stops before
-- changing anything, and Redis never stops a script once it has written.
local function capsPrune(caps, nowSec, second)
  local read = second and redis.call('HMGET', caps, 'p', 'n', second) or redis.call('HMGET', caps, 'p', 'n')
  local last, live = tonumber(read[1]), tonumber(read[2]) or 0
  local inSecond = tonumber(read[3]) or 0
  if last and last >= nowSec then
    return live, inSecond
  end
  redis.call('HSET', caps, 'p', nowSec)
  if not last then
    return live, inSecond
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
    live = redis.call('HINCRBY', caps, 'n', -freed)
    redis.call('HINCRBY', caps, 'x', freed)
  end
  return live, inSecond
end

-- Lists longer than this are written with their header, so that a create need not read them whole.
local OWNER_BARE_MAX = 4

-- The live entries {{second, count}, ...} of a list in either form, newest first (equal seconds,
-- which writers of both releases may leave, merged), and their total.
local function ownerEntries(list, nowSec)
  local live = {}
  for sec, count in string.gmatch(list, '(%d+):(%d+)') do
    sec = tonumber(sec)
    if sec > nowSec then
      live[#live + 1] = { sec, tonumber(count) }
    end
  end
  table.sort(live, function(a, b)
    return a[1] > b[1]
  end)
  local entries, total = {}, 0
  for _, entry in ipairs(live) do
    local last = entries[#entries]
    if last and last[1] == entry[1] then
      last[2] = last[2] + entry[2]
    else
      entries[#entries + 1] = entry
    end
    total = total + entry[2]
  end
  return entries, total
end

-- Entries as text, newest first, or oldest first: the bare form, as the previous release writes and
-- reads a list (it takes its first entry for the soonest second to free a slot).
local function ownerList(entries, oldestFirst)
  local parts, n = {}, #entries
  for i = 1, n do
    local entry = entries[oldestFirst and n + 1 - i or i]
    parts[i] = string.format('%d:%d', entry[1], entry[2])
  end
  return table.concat(parts, ' ')
end

-- An owner as the scripts work on it: its entries as text (newest first), their total, a lower
-- bound of their oldest second, whether it must be written back, and how: with its header or bare.
local function ownerOf(raw, nowSec)
  if raw then
    local total, oldest, from = string.match(raw, '^(%d+) (%d+)|()')
    if total and tonumber(oldest) > nowSec then
      return { list = string.sub(raw, from), total = tonumber(total), oldest = tonumber(oldest), headed = true }
    end
    -- Bare, or seconds that have passed: read whole (about once a second for a busy owner), and
    -- written back only if that changed it.
    local entries, sum = ownerEntries(total and string.sub(raw, from) or raw, nowSec)
    if #entries > 0 then
      local headed = #entries > OWNER_BARE_MAX
      return {
        list = ownerList(entries),
        total = sum,
        oldest = entries[#entries][1],
        headed = headed,
        dirty = total ~= nil or headed or ownerList(entries, true) ~= raw,
      }
    end
  end
  return { list = '', total = 0, oldest = 0, headed = false, dirty = raw ~= nil }
end

local function ownerRead(byAddress, owner, nowSec)
  return ownerOf(redis.call('HGET', byAddress, owner), nowSec)
end

local function ownerWrite(byAddress, owner, rec)
  if rec.list == '' then
    redis.call('HDEL', byAddress, owner)
    return
  end
  if not rec.headed then
    if not string.find(rec.list, ' ', 1, true) then
      -- One second: the same text bare (an owner's first session, the usual case).
      redis.call('HSET', byAddress, owner, rec.list)
      return
    end
    -- A short list (it was bare when read): bare again unless it has grown past the bound.
    local entries = ownerEntries(rec.list, 0)
    if #entries <= OWNER_BARE_MAX then
      redis.call('HSET', byAddress, owner, ownerList(entries, true))
      return
    end
    rec.oldest = entries[#entries][1]
  end
  redis.call('HSET', byAddress, owner, string.format('%d %d|%s', rec.total, rec.oldest, rec.list))
end

-- One more session expiring in second expSec. Newest first, so a create's second is the front
-- one or goes in front of it, but for a session that outlives none of the owner's others.
local function ownerAdd(rec, expSec)
  rec.total = rec.total + 1
  if rec.list == '' then
    rec.list, rec.oldest = string.format('%d:1', expSec), expSec
    return
  end
  local sec, count, rest = string.match(rec.list, '^(%d+):(%d+)()')
  sec = tonumber(sec)
  if sec == expSec then
    rec.list = string.format('%d:%d%s', expSec, tonumber(count) + 1, string.sub(rec.list, rest))
  elseif sec < expSec then
    rec.list = string.format('%d:1 %s', expSec, rec.list)
  else
    local entries = ownerEntries(string.format('%s %d:1', rec.list, expSec), 0)
    rec.list = ownerList(entries)
    rec.oldest = math.min(rec.oldest, expSec)
  end
end

-- A create's owner whose stored list is headed and wholly in the future (the usual case for a busy
-- owner) as its header and front entry alone, without copying the list out of it: nil otherwise.
-- Strings in Redis's Lua cost a hash of every byte when made, so an owner of many seconds is read
-- and rewritten without making any string of its list's size but the one written back.
local function ownerFront(raw, nowSec)
  local total, oldest, at, sec, count = string.match(raw, '^(%d+) (%d+)|()(%d+):(%d+)')
  if not total then
    return nil
  end
  oldest = tonumber(oldest)
  if oldest <= nowSec then
    return nil
  end
  return { raw = raw, at = at, total = tonumber(total), oldest = oldest, headed = true, front = tonumber(sec),
    frontCount = tonumber(count) }
end

-- The stored list of an owner from ownerFront with one more session expiring in second expSec, as
-- ownerAdd and ownerWrite would make it: header and front entry replaced in one pass. nil for a
-- session that expires before the owner's newest (ownerAdd sorts it in).
local function ownerFrontAdd(rec, expSec)
  local total = rec.total + 1
  if rec.front == expSec then
    return (string.gsub(rec.raw, '^%d+ %d+|%d+:%d+', string.format('%d %d|%d:%d', total, rec.oldest, expSec,
      rec.frontCount + 1), 1))
  elseif rec.front < expSec then
    return (string.gsub(rec.raw, '^%d+ %d+|', string.format('%d %d|%d:1 ', total, rec.oldest, expSec), 1))
  end
  return nil
end

-- One session fewer in second expSec; false when the owner has none there.
local function ownerRemove(rec, expSec)
  local list = rec.list
  local s, e, count = string.find(list, '^' .. expSec .. ':(%d+)')
  if not s then
    s, e, count = string.find(list, ' ' .. expSec .. ':(%d+)')
    if not s then
      return false
    end
    s = s + 1
  end
  count = tonumber(count)
  if count > 1 then
    rec.list = string.sub(list, 1, s - 1) .. expSec .. ':' .. (count - 1) .. string.sub(list, e + 1)
  elseif s == 1 then
    rec.list = string.sub(list, e + 2)
  else
    rec.list = string.sub(list, 1, s - 2) .. string.sub(list, e + 1)
  end
  -- The oldest bound may now be below every second listed: still a bound, as the header promises.
  rec.total = rec.total - 1
  return true
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

-- nil when one more session fits both caps (`live` sessions counted now), else {0, cap, ms until a
-- slot frees}.
local function capsRefusal(caps, live, rec, globalCap, ownerCap, now, nowSec)
  if globalCap > 0 and live >= globalCap then
    return { 0, 'global', capsFirstSecond(caps, nowSec) * 1000 - now }
  end
  if ownerCap > 0 and rec.total >= ownerCap then
    -- The soonest second that frees a slot: the oldest listed (read whole: refusals are rare).
    local entries = ownerEntries(rec.list or string.sub(rec.raw, rec.at), nowSec)
    local soonest = entries[#entries]
    return { 0, 'address', (soonest and soonest[1] or nowSec + 1) * 1000 - now }
  end
  return nil
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
  local rec = ownerRead(byAddress, owner, nowSec)
  if ownerRemove(rec, expSec) or rec.dirty then
    ownerWrite(byAddress, owner, rec)
  end
end

-- Owners whose sessions all expired and who never came back would stay forever: every
-- SWEEP_EVERY-th create of an expiry second (and its first) looks at a few more owners (cursor in the
-- caps hash) and drops their past seconds, about SWEEP_COUNT / SWEEP_EVERY per create, at least as
-- many as creates add. A small hash is left alone (it is bounded and HSCAN would return all of it
-- each time).
local SWEEP_EVERY, SWEEP_COUNT = 8, 32

-- Whether an owner's stored list may name a second that has passed: its header's bound says, or
-- else any of its seconds (a bare list is short). The sweep reads whole only the lists this says
-- of; nearly all it looks at are of owners whose sessions are all live.
local function ownerHasPast(raw, nowSec)
  local oldest = string.match(raw, '^%d+ (%d+)|')
  if oldest then
    return tonumber(oldest) <= nowSec
  end
  for sec in string.gmatch(raw, '(%d+):') do
    if tonumber(sec) <= nowSec then
      return true
    end
  end
  return false
end

local function capsSweep(caps, byAddress, nowSec, skip)
  if redis.call('HLEN', byAddress) <= 128 then
    return
  end
  local scan = redis.call('HSCAN', byAddress, redis.call('HGET', caps, 'c') or '0', 'COUNT', SWEEP_COUNT)
  redis.call('HSET', caps, 'c', scan[1])
  local flat = scan[2]
  for i = 1, #flat, 2 do
    local owner = flat[i]
    if owner ~= skip and ownerHasPast(flat[i + 1], nowSec) then
      local rec = ownerOf(flat[i + 1], nowSec)
      if rec.dirty then
        ownerWrite(byAddress, owner, rec)
      end
    end
  end
end

-- What every create does first: prunes, then checks that one more session of `owner`, expiring in
-- second expSec, fits both caps. The prune's one HMGET reads the live count and expSec's too, so that
-- capsTake can write both in one HSET. Returns the refusal to answer with (nil when it fits), and what
-- capsTake needs.
local function capsCheck(caps, byAddress, owner, globalCap, ownerCap, now, nowSec, expSec)
  local second = string.format('%d', expSec)
  local live, inSecond = capsPrune(caps, nowSec, second)
  local claim = { live = live, second = second, inSecond = inSecond, tracked = ownerCap > 0 and owner ~= '-' }
  if claim.tracked then
    local raw = redis.call('HGET', byAddress, owner)
    claim.rec = raw and ownerFront(raw, nowSec) or ownerOf(raw, nowSec)
  else
    claim.rec = ownerOf(nil, nowSec)
  end
  return capsRefusal(caps, live, claim.rec, globalCap, ownerCap, now, nowSec), claim
end

-- Counts the session `capsCheck` let through, expiring in second expSec, and now and then tidies a
-- few owners.
local function capsTake(caps, byAddress, owner, claim, expSec, nowSec)
  local inSecond = claim.inSecond + 1
  redis.call('HSET', caps, 'n', string.format('%d', claim.live + 1), claim.second, string.format('%d', inSecond))
  if claim.tracked then
    local rec = claim.rec
    local value = rec.raw and ownerFrontAdd(rec, expSec)
    if value then
      redis.call('HSET', byAddress, owner, value)
    else
      rec.list = rec.list or string.sub(rec.raw, rec.at)
      ownerAdd(rec, expSec)
      ownerWrite(byAddress, owner, rec)
    end
  end
  if inSecond % SWEEP_EVERY == 1 then
    capsSweep(caps, byAddress, nowSec, owner)
  end
end

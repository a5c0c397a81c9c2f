--[[
  Compare-and-set write of a session's payload: the check, the write, the transaction record and
  the wake-up notice are one atomic step, whichever replica runs it.

  KEYS[1]  session string            rz:{<id>} (layout in createSession-1.lua)
  KEYS[2]  transaction record hash   rz:{<id>}:txn
  ARGV[1]  family the caller speaks (another family's session is "not found")
  ARGV[2]  condition: 'any' | 'etag' | 'token'
  ARGV[3]  'etag': space-separated acceptable ETag values; 'token': the expected revision
  ARGV[4]  payload
  ARGV[5]  content type
  ARGV[6]  transaction id, or '' for none
  ARGV[7]  most transaction ids remembered per session
  ARGV[8]  wake-up channel (sharded pub/sub, same slot as the keys)
  ARGV[9]  largest payload a wake-up notice carries; above it the notice is the bare revision

  Returns {0} when not found, else
    {code, answered_code, answered_rev, type, rev, salt, created, modified, expires}
  code: 1 updated, 2 conflict, 3 unchanged (stale token, identical data: idempotent retry),
        4 replayed (a known txnId; answered_* is what it got the first time), 5 too many txnIds.
]]
local value = redis.call('GET', KEYS[1])
if not value then
  return {0}
end
local nl = string.find(value, '\n', 1, true)
local f, r, g, c, m, e, t = string.match(string.sub(value, 1, nl - 1), '^(%S+) (%d+) (%S+) (%d+) (%d+) (%d+) (.*)$')
if f ~= ARGV[1] then
  return {0}
end
-- The order the hash layout had; the payload (index 4) is only cut out when compared.
local cur = {f, r, g, false, t, c, m, e}

local txn = ARGV[6]
if txn ~= '' then
  local rec = redis.call('HGET', KEYS[2], txn)
  if rec then
    local sep = string.find(rec, ':', 1, true)
    return {4, tonumber(string.sub(rec, 1, sep - 1)), tonumber(string.sub(rec, sep + 1)), cur[5], tonumber(cur[2]),
      cur[3], tonumber(cur[6]), tonumber(cur[7]), tonumber(cur[8])}
  end
  if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[7]) then
    return {5, 5, tonumber(cur[2]), cur[5], tonumber(cur[2]), cur[3], tonumber(cur[6]), tonumber(cur[7]),
      tonumber(cur[8])}
  end
end

local mode = ARGV[2]
local matched
if mode == 'any' then
  matched = true
elseif mode == 'token' then
  matched = ARGV[3] == cur[2]
else
  local current = cur[3] .. '.' .. cur[2]
  matched = false
  for candidate in string.gmatch(ARGV[3], '%S+') do
    if candidate == current then
      matched = true
      break
    end
  end
end

local code = 1
local rev = tonumber(cur[2])
local modified = tonumber(cur[7])
local ctype = cur[5]
if not matched then
  if mode == 'token' and ARGV[4] == string.sub(value, nl + 1) then
    code = 3
  else
    code = 2
  end
else
  local t = redis.call('TIME')
  modified = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  rev = rev + 1
  ctype = ARGV[5]
  local stored = string.format('%s %d %s %s %d %s %s\n', cur[1], rev, cur[3], cur[6], modified, cur[8], ctype) .. ARGV[4]
  redis.call('SET', KEYS[1], stored, 'KEEPTTL')
  -- The notice is the new value itself, so a waiter answers from it without reading the session
  -- again; for a large payload it is the bare revision, and waiters read.
  if #ARGV[4] <= tonumber(ARGV[9]) then
    redis.call('SPUBLISH', ARGV[8], stored)
  else
    redis.call('SPUBLISH', ARGV[8], rev)
  end
end

if txn ~= '' then
  redis.call('HSET', KEYS[2], txn, code .. ':' .. rev)
  redis.call('PEXPIREAT', KEYS[2], cur[8])
end
return {code, code, rev, ctype, rev, cur[3], tonumber(cur[6]), modified, tonumber(cur[8])}

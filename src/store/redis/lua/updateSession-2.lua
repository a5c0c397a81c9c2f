--[[
  Compare-and-set write of a session's payload: the check, the write, the transaction record and
  the wake-up notice are one atomic step, whichever replica runs it.

  KEYS[1]  session string            rz:{<id>}
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
  code: 1 updated, 2 conflict, 3 unchanged (the verbatim re-send of a write that already landed),
        4 replayed (a known txnId; answered_* is what it got the first time), 5 too many txnIds.
]]
--- @include "time"
--- @include "session"

local value = redis.call('GET', KEYS[1])
local s, at = readSession(value)
if not s or s.family ~= ARGV[1] then
  return { 0 }
end

local function answer(code, answeredCode, answeredRev)
  return { code, answeredCode, answeredRev, s.ctype, s.rev, s.salt, s.created, s.modified, s.expires }
end

local txn = ARGV[6]
if txn ~= '' then
  local rec = redis.call('HGET', KEYS[2], txn)
  if rec then
    local sep = string.find(rec, ':', 1, true)
    return answer(4, tonumber(string.sub(rec, 1, sep - 1)), tonumber(string.sub(rec, sep + 1)))
  end
  if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[7]) then
    return answer(5, 5, s.rev)
  end
end

local mode = ARGV[2]
local matched = mode == 'any'
local previous = false
if mode == 'token' then
  matched = ARGV[3] == tostring(s.rev)
elseif mode == 'etag' then
  local current = s.salt .. '.' .. s.rev
  -- A session at its first revision has no version before it (revision 0 was never handed out).
  local before = s.rev > 1 and (s.salt .. '.' .. (s.rev - 1)) or nil
  for candidate in string.gmatch(ARGV[3], '%S+') do
    if candidate == current then
      matched = true
    elseif candidate == before then
      previous = true
    end
  end
end

local code = 1
if not matched then
  -- Clients re-send a write verbatim when its answer was lost (a 503 from a slow store, a dropped
  -- connection, a balancer re-sending it). If it landed, the stored state is exactly what it wrote:
  -- answer as if it had just been written, and write nothing. MSC4388 compares the data only; the
  -- ETag family also needs the type, and the version the re-send names must be the one just before.
  local same = ARGV[4] == string.sub(value, at)
  if same and (mode == 'token' or (previous and ARGV[5] == s.ctype)) then
    code = 3
  else
    code = 2
  end
else
  s.rev = s.rev + 1
  s.modified = nowMs()
  s.ctype = ARGV[5]
  local stored = sessionHead(s) .. ARGV[4]
  redis.call('SET', KEYS[1], stored, 'KEEPTTL')
  -- The notice is the new value itself, so a waiter answers from it without reading the session
  -- again; for a large payload it is the bare revision, and waiters read.
  if #ARGV[4] <= tonumber(ARGV[9]) then
    redis.call('SPUBLISH', ARGV[8], stored)
  else
    redis.call('SPUBLISH', ARGV[8], s.rev)
  end
end

if txn ~= '' then
  redis.call('HSET', KEYS[2], txn, code .. ':' .. s.rev)
  redis.call('PEXPIREAT', KEYS[2], s.expires)
end
return answer(code, code, s.rev)

-- Redis Cluster only: the caps' claims and releases happen in a step of their own, apart from the
-- session's, so a replica may have to retry one without knowing whether it already happened. The
-- journal remembers each for a while (a sorted set by when to forget, and a hash of details) so a
-- retry finds it and nothing is counted or freed twice.

local function journalPrune(journal, details, now)
  local old = redis.call('ZRANGEBYSCORE', journal, '-inf', now, 'LIMIT', 0, 64)
  if #old > 0 then
    redis.call('ZREM', journal, unpack(old))
    redis.call('HDEL', details, unpack(old))
  end
end

-- Records `entry` until `untilMs`; false when it is recorded already.
local function journalAdd(journal, details, entry, untilMs, detail)
  if redis.call('ZADD', journal, 'NX', untilMs, entry) == 0 then
    return false
  end
  redis.call('HSET', details, entry, detail)
  return true
end

-- Removes `entry`, returning its detail; nil when it was not recorded (or forgotten).
local function journalTake(journal, details, entry)
  local detail = redis.call('HGET', details, entry)
  if not detail then
    return nil
  end
  redis.call('ZREM', journal, entry)
  redis.call('HDEL', details, entry)
  return detail
end

-- The stored session string (layout in src/store/format.ts):
--   "@<owner> <family> <rev> <salt> <created> <modified> <expires> <type>\n<payload>"
-- Sessions of the previous release have no "@<owner>" in front: they read as owned by nobody and
-- were never counted by these caps (`counted` false), so deleting one frees no slot.

-- The head of a stored value as a table, and the offset where its payload starts; nil when absent
-- (a deleted session's tombstone, "~<owner> <expires>", has no newline and reads as absent).
local function readSession(value)
  local nl = value and string.find(value, '\n', 1, true)
  if not nl then
    return nil
  end
  local head = string.sub(value, 1, nl - 1)
  local owner, rest = string.match(head, '^@(%S*) (.*)$')
  if not owner then
    rest = head
  end
  local f, r, g, c, m, e, ctype = string.match(rest, '^(%S+) (%d+) (%S+) (%d+) (%d+) (%d+) (.*)$')
  return {
    family = f,
    rev = tonumber(r),
    salt = g,
    created = tonumber(c),
    modified = tonumber(m),
    expires = tonumber(e),
    owner = owner or '-',
    counted = owner ~= nil,
    ctype = ctype,
  }, nl + 1
end

-- A session the caps never counted keeps the previous release's layout when written: with an owner
-- its delete would free a slot it never held.
local function sessionHead(s)
  local owner = s.counted == false and '' or ('@' .. s.owner .. ' ')
  return string.format('%s%s %d %s %d %d %d %s\n', owner, s.family, s.rev, s.salt, s.created, s.modified,
    s.expires, s.ctype)
end

-- The head of the session a create makes (counted, revision 1, unchanged since made), formatted
-- straight from its fields: the create's hot path builds no table for it.
local function newSessionHead(owner, family, salt, created, expires, ctype)
  return string.format('@%s %s 1 %s %d %d %d %s\n', owner, family, salt, created, created, expires, ctype)
end

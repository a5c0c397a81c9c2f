-- The stored session string (layout in src/store/format.ts):
--   "<family> <rev> <salt> <created> <modified> <expires> @<owner> <type>\n<payload>"
-- Sessions of the previous release have no "@<owner>" field; they read as owned by nobody ('-').

-- The head of a stored value as a table, and the offset where its payload starts; nil when absent
-- (a deleted session's tombstone, "~<owner> <expires>", has no newline and reads as absent).
local function readSession(value)
  local nl = value and string.find(value, '\n', 1, true)
  if not nl then
    return nil
  end
  local f, r, g, c, m, e, rest = string.match(string.sub(value, 1, nl - 1), '^(%S+) (%d+) (%S+) (%d+) (%d+) (%d+) (.*)$')
  local owner, ctype = string.match(rest, '^@(%S*) (.*)$')
  if not owner then
    owner, ctype = '-', rest
  end
  return {
    family = f,
    rev = tonumber(r),
    salt = g,
    created = tonumber(c),
    modified = tonumber(m),
    expires = tonumber(e),
    owner = owner,
    ctype = ctype,
  }, nl + 1
end

local function sessionHead(s)
  return string.format('%s %d %s %d %d %d @%s %s\n', s.family, s.rev, s.salt, s.created, s.modified, s.expires,
    s.owner, s.ctype)
end

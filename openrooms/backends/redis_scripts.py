"""The Lua scripts of :mod:`openrooms.backends.redis`: each write's checks and writes, run
atomically by the server (loaded once, then called by SHA with ``EVALSHA``).

Every check comes before the first write, so a refusal leaves nothing behind (a script is
atomic but not rolled back). A refusal is returned as a reply (``stale``, ``notfound``,
``exists``, ``leased``), never as an error, and the store raises the matching OpenRooms error.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACQUIRE",
    "APPEND",
    "COMMIT",
    "DUE",
    "EXPIRED",
    "FENCE",
    "NEXT_WAKE",
    "PUT_WORKFLOW",
    "RELEASE",
    "RENEW",
    "ROOMS_COUNT",
    "ROOMS_SCAN",
]

# Numbers a script formats (a token, a sequence number) stay far below 10^14, which Lua 5.1
# prints exactly; times (ms since the epoch) are passed in as text and stored as given.

_LIB: Final = """
local function num(v) if v then return tonumber(v) end return 0 end
local function last_seq(log)
  local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
  if #last == 0 then return 0 end
  local id = last[1][1]
  return tonumber(string.sub(id, string.find(id, '-', 1, true) + 1))
end
-- a lease may be taken unless another owner holds it unexpired (and not force); returns the
-- refusal, or nil and the new token and recoveries (an unreleased lease: + 1)
local function may_take(lease, owner, now, force)
  local l = redis.call('HMGET', lease, 'tok', 'own', 'exp', 'rec')
  if l[2] and l[2] ~= owner and tonumber(l[3]) > now and force ~= '1' then
    return {'leased', l[2], l[3]}
  end
  local rec = 0
  if l[2] then rec = num(l[4]) + 1 end  -- its holder never let go: expired, or taken by force
  return nil, num(l[1]) + 1, rec
end
-- appends under *token* are refused below the log's fence and, where this store holds the
-- room's lease too, below its current token
local function fenced(fence, lease, token)
  local f = num(redis.call('GET', fence))
  return f <= token and num(redis.call('HGET', lease, 'tok')) <= token, f
end
local function append(log, first, from)
  for i = from, #ARGV do
    redis.call('XADD', log, '0-' .. (first + i - from), 'e', ARGV[i])
  end
end
"""

COMMIT: Final = (
    _LIB
    + """
-- KEYS: room, log, lease, fence, rooms, ids, due, held
-- ARGV: expected ('' creates), token ('' unfenced), owner ('' takes no lease), now,
--   expires, force, release, id, version, status, workflow, created_at, due ('' none),
--   body, variables, memory, usage, visits ('' each: unchanged), first seq ('' none),
--   events...
local room, log, lease = KEYS[1], KEYS[2], KEYS[3]
local tok, rec
if ARGV[1] == '' then
  if redis.call('EXISTS', room) == 1 then return {'exists'} end
else
  local v = redis.call('HGET', room, 'v')
  if not v then return {'notfound'} end
  if ARGV[3] ~= '' then
    local refused
    refused, tok, rec = may_take(lease, ARGV[3], tonumber(ARGV[4]), ARGV[6])
    if refused then return refused end
  end
  if tonumber(v) ~= tonumber(ARGV[1]) then return {'stale'} end
  if ARGV[2] ~= '' then
    local token = tonumber(ARGV[2])
    if num(redis.call('HGET', lease, 'tok')) ~= token then return {'stale'} end
    if not fenced(KEYS[4], lease, token) then return {'stale'} end
  end
end
local first = ARGV[19]
if first ~= '' then
  first = tonumber(first)
  if first ~= last_seq(log) + 1 then return {'stale'} end
end
if tok then
  redis.call('HSET', lease, 'tok', tok, 'own', ARGV[3], 'exp', ARGV[5], 'rec', rec)
  redis.call('ZADD', KEYS[8], ARGV[5], ARGV[8])
end
redis.call('HSET', room, 'v', ARGV[9], 's', ARGV[10], 'w', ARGV[11], 'b', ARGV[14])
local names = {'variables', 'memory', 'usage', 'visits'}
for i = 1, 4 do
  if ARGV[14 + i] ~= '' then redis.call('HSET', room, names[i], ARGV[14 + i]) end
end
if ARGV[13] ~= '' then
  redis.call('ZADD', KEYS[7], ARGV[13], ARGV[8])
else
  redis.call('ZREM', KEYS[7], ARGV[8])
end
if ARGV[1] == '' then
  redis.call('ZADD', KEYS[5], ARGV[12], ARGV[8])
  redis.call('ZADD', KEYS[6], 0, ARGV[8])
end
if first ~= '' then append(log, first, 20) end
if ARGV[7] == '1' then
  redis.call('HDEL', lease, 'own')
  redis.call('HSET', lease, 'exp', 0, 'rec', 0)
  redis.call('ZREM', KEYS[8], ARGV[8])
end
if tok then return {'ok', tok, rec} end
return {'ok'}
"""
)

ACQUIRE: Final = (
    _LIB
    + """
-- KEYS: room, lease, held; ARGV: owner, now, expires, force, id
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local refused, tok, rec = may_take(KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[4])
if refused then return refused end
redis.call('HSET', KEYS[2], 'tok', tok, 'own', ARGV[1], 'exp', ARGV[3], 'rec', rec)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
return {'ok', tok, rec}
"""
)

RENEW: Final = """
-- KEYS: lease, held; ARGV: token, owner, expires, id
local l = redis.call('HMGET', KEYS[1], 'tok', 'own', 'rec')
if l[1] and tonumber(l[1]) == tonumber(ARGV[1]) and l[2] == ARGV[2] then
  redis.call('HSET', KEYS[1], 'exp', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  return {1, tonumber(l[3] or 0)}
end
return {0, 0}
"""

RELEASE: Final = """
-- KEYS: lease, held; ARGV: token, id. The hash stays: the next token is still above every
-- earlier one.
local tok = redis.call('HGET', KEYS[1], 'tok')
if tok and tonumber(tok) == tonumber(ARGV[1]) then
  redis.call('HDEL', KEYS[1], 'own')
  redis.call('HSET', KEYS[1], 'exp', 0, 'rec', 0)
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 0
"""

APPEND: Final = (
    _LIB
    + """
-- KEYS: log, fence, lease; ARGV: token ('' unfenced), first seq, events...
local token, f = nil, 0
if ARGV[1] ~= '' then
  token = tonumber(ARGV[1])
  local ok
  ok, f = fenced(KEYS[2], KEYS[3], token)
  if not ok then return 'stale' end
end
local first = tonumber(ARGV[2])
if first ~= last_seq(KEYS[1]) + 1 then return 'stale' end
if token and f ~= token then redis.call('SET', KEYS[2], token) end
append(KEYS[1], first, 3)
return 'ok'
"""
)

FENCE: Final = (
    _LIB
    + """
-- KEYS: fence, lease; ARGV: token
local token = tonumber(ARGV[1])
local ok, f = fenced(KEYS[1], KEYS[2], token)
if not ok then return 'stale' end
if f ~= token then redis.call('SET', KEYS[1], token) end
return 'ok'
"""
)

EXPIRED: Final = """
-- KEYS: held (unreleased leases by expiry); ARGV: room key prefix, now, limit. Running or
-- queued rooms whose lease ran out unreleased, in (expires_at, id) order.
local limit, out, offset = tonumber(ARGV[3]), {}, 0
while #out < limit do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', offset, 128)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local status = redis.call('HGET', ARGV[1] .. id, 's')
    if status == 'running' or status == 'queued' then
      out[#out + 1] = id
      if #out >= limit then break end
    end
  end
  offset = offset + #ids
end
return out
"""

DUE: Final = """
-- KEYS: due; ARGV: lease key prefix, now, limit. Rooms due by now whose lease is not held
-- unexpired, in (due_at, id) order.
local now, limit, out, offset = tonumber(ARGV[2]), tonumber(ARGV[3]), {}, 0
while #out < limit do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', offset, 128)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local l = redis.call('HMGET', ARGV[1] .. id, 'own', 'exp')
    if not l[1] or tonumber(l[2]) <= now then
      out[#out + 1] = id
      if #out >= limit then break end
    end
  end
  offset = offset + #ids
end
return out
"""

NEXT_WAKE: Final = """
-- KEYS: due; ARGV: lease key prefix. In due order up to the first room nobody holds (every
-- later room is due later still): the least of due_at, or the lease's expiry while held.
local found, offset = nil, 0
while true do
  local page = redis.call('ZRANGE', KEYS[1], offset, offset + 127, 'WITHSCORES')
  if #page == 0 then break end
  for i = 1, #page, 2 do
    local at = tonumber(page[i + 1])
    local l = redis.call('HMGET', ARGV[1] .. page[i], 'own', 'exp')
    if l[1] then at = math.max(at, tonumber(l[2])) end
    if not found or at < found then found = at end
    if not l[1] then return string.format('%d', found) end
  end
  offset = offset + #page / 2
end
if found then return string.format('%d', found) end
return false
"""

PUT_WORKFLOW: Final = """
-- KEYS: wf, workflows; ARGV: id, version, digest, body. 1 new, 0 identical, -1 conflict.
local d = redis.call('HGET', KEYS[1], 'd:' .. ARGV[2])
if d then
  if d == ARGV[3] then return 0 end
  return -1
end
redis.call('HSET', KEYS[1], 'd:' .. ARGV[2], ARGV[3], 'b:' .. ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

# A room's status when it passes the filters of a listing or a count (ARGV[1]: room key
# prefix, ARGV[2]: status or '', ARGV[3]: '1' to match ARGV[4] as the workflow id, ARGV[5]:
# a prefix of the id or the workflow id, or ''), else nil. string.sub counts bytes: a UTF-8
# text starts with a prefix exactly when its bytes start with the prefix's.
_MATCH: Final = """
local function matches(id)
  local h = redis.call('HMGET', ARGV[1] .. id, 's', 'w')
  local s, w = h[1], h[2]
  if not s then return nil end  -- its keys were deleted: the index entry is stale
  if ARGV[2] ~= '' and s ~= ARGV[2] then return nil end
  if ARGV[3] == '1' and w ~= ARGV[4] then return nil end
  local q = ARGV[5]
  if q ~= '' and string.sub(id, 1, #q) ~= q and not (w and string.sub(w, 1, #q) == q) then
    return nil
  end
  return s
end
"""

ROOMS_SCAN: Final = (
    _MATCH
    + """
-- KEYS: rooms; ARGV 1-5 as matches(), then max score, offset, count (ids to read), limit.
-- Reads up to `count` ids newest first from score `max` (ZREVRANGEBYSCORE) after `offset`,
-- and stops at the `limit`th match; returns how many it read, then id, score of each match.
local page = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[6], '-inf', 'WITHSCORES', 'LIMIT',
  ARGV[7], ARGV[8])
local limit, out, read, found = tonumber(ARGV[9]), {0}, 0, 0
for i = 1, #page, 2 do
  read = read + 1
  if matches(page[i]) then
    out[#out + 1] = page[i]
    out[#out + 1] = page[i + 1]
    found = found + 1
    if found >= limit then break end
  end
end
out[1] = read
return out
"""
)

ROOMS_COUNT: Final = (
    _MATCH
    + """
-- KEYS: rooms; ARGV 1-5 as matches() (ARGV[2] ''), then start, stop (ranks, oldest first).
-- Returns how many ids it read, then status, count pairs of those that match.
local ids = redis.call('ZRANGE', KEYS[1], ARGV[6], ARGV[7])
local counts, out = {}, {#ids}
for _, id in ipairs(ids) do
  local s = matches(id)
  if s then counts[s] = (counts[s] or 0) + 1 end
end
for s, n in pairs(counts) do
  out[#out + 1] = s
  out[#out + 1] = n
end
return out
"""
)

"""The Lua the Redis adapters run: one place for every script (one node and cluster).

Each script touches only the keys it is given (KEYS), so on a cluster one call holds
the keys of one hash slot and the same script runs unchanged.
"""

from __future__ import annotations

# KEYS: entity keys. ARGV[1]: order field name, ARGV[2]: key ttl in seconds (0: none),
# ARGV[3]: n = fields per key, ARGV[4..3+n]: the field names, the last one `_ts:{view}`
# (the same for every key, so sent once per call), then per key: its order value
# followed by its n values (the last one its `_ts`). The HSET argument table is built once per call
# and only its values are replaced per key: ~3.3 us of Redis time per key, against ~3.9
# with names repeated per key (15 arguments per key instead of 8 to parse and convert).
# Orders are "event_us:created_us" and compared as numbers: event and created times in
# microseconds stay below 2**53, so Lua's doubles hold them exactly (string comparison
# would depend on the server's collation locale). The stored `_ts` is decoded in Lua
# (field 1 varint seconds, field 2 varint nanos; a negative int64 is a 10-byte varint,
# decoded by its complement so that it stays exact): one HMGET of both fields per key.
# `_fl_ts` is stored with the `_ts` bytes it was written with appended, so the common
# case (we wrote the stored row) is one string comparison and no decoding. Cost of
# comparing against `_ts`, A/B on the shared 2-core machine (Redis time per key from
# INFO commandstats, min of 15 runs of 20k keys, 5 features): fresh keys 5.45 -> 5.75
# us, overwriting a row 7.55 -> 8.10 us, skipping an older row 4.98 -> 6.26 us.
LATEST_LWW_LUA = """
local function ts_us(s)
  local b = {string.byte(s, 1, -1)}
  local n, i, secs, nanos = #b, 1, 0, 0
  while i <= n do
    local tag, v, mul, start = b[i], 0, 1, i + 1
    if tag ~= 8 and tag ~= 16 then return nil end
    i = start
    repeat
      local x = b[i]
      if x == nil then return nil end
      if x < 128 then v = v + x * mul else v = v + (x - 128) * mul end
      mul = mul * 128
      i = i + 1
    until x < 128
    if i - start == 10 then
      v, mul = 0, 1
      for j = start, start + 8 do
        v = v + (127 - b[j] % 128) * mul
        mul = mul * 128
      end
      v = -(v + 1)
    end
    if tag == 8 then secs = v else nanos = v end
  end
  return secs * 1000000 + math.floor(nanos / 1000)
end
local function split(order)
  local e, c, rest = string.match(order, '^(-?%d+):(-?%d+)()')
  if e == nil then return nil, nil, 1 end
  return tonumber(e), tonumber(c), rest
end
local ofield = ARGV[1]
local ttl = tonumber(ARGV[2])
local nf = tonumber(ARGV[3])
local tsfield = ARGV[3 + nf]
local args = {ofield, false}
for j = 1, nf do args[2 * j + 1] = ARGV[3 + j] end
local pos = 4 + nf
local written = 0
for _, key in ipairs(KEYS) do
  local new = ARGV[pos]
  local stored = redis.call('HMGET', key, ofield, tsfield)
  local old, ots = stored[1], stored[2]
  local oe, oc, rest = nil, nil, 1
  if old then oe, oc, rest = split(old) end
  if ots and (not old or string.sub(old, rest) ~= ots) then
    local t = ts_us(ots)
    if t ~= nil and t ~= oe then oe, oc = t, -1 end
  end
  local write = true
  if oe ~= nil then
    local ne, nc = split(new)
    write = ne > oe or (ne == oe and nc >= oc)
  end
  if write then
    args[2] = new .. ARGV[pos + nf]
    for j = 1, nf do args[2 * j + 2] = ARGV[pos + j] end
    redis.call('HSET', key, unpack(args))
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
    written = written + 1
  end
  pos = pos + 1 + nf
end
return written
"""

# Exactly-once tile apply without a transaction across keys (streaming.redis_sink): per
# tile hash, a compare-and-set on its applied-offset mark of the batch's partition. Only
# if the stored mark equals the one the writer's cached state was built on ("-1": none)
# are the fields and the new mark set, in this one script call, so a key holds either
# all of a batch or none of it. When a tile starts (the only time the key's expiry moves
# and an old tile can fall out), fields past retention are pruned (marks are not tile
# fields: they do not start with a number) and the expiry is pushed forward, never back.
# KEYS: tile keys (one node: any; a cluster: one hash slot's). ARGV[1]: now (ms),
# ARGV[2]: the mark field `_o:{topic}:{partition}`, ARGV[3]: the new mark (the batch's
# last offset); per key: expected mark, expire_at_ms (0: unchanged), prune_before_s (0:
# no pruning), n, then n field/value pairs. Returns the 1-based positions in KEYS of the
# keys not written (their mark moved: another writer).
TILE_APPLY_LUA = """
local now = tonumber(ARGV[1])
local mark, new = ARGV[2], ARGV[3]
local pos = 4
local conflicts = {}
for i, key in ipairs(KEYS) do
  local expected = ARGV[pos]
  local exp, cutoff, n = tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2]), tonumber(ARGV[pos + 3])
  local stored = redis.call('HGET', key, mark)
  if (stored or '-1') ~= expected then
    conflicts[#conflicts + 1] = i
  else
    local args = {mark, new}
    for j = 1, 2 * n do args[j + 2] = ARGV[pos + 3 + j] end
    redis.call('HSET', key, unpack(args))
    if cutoff > 0 then
      for _, f in ipairs(redis.call('HKEYS', key)) do
        local s = tonumber(string.match(f, '^(%-?%d+)'))
        if s and s < cutoff then redis.call('HDEL', key, f) end
      end
    end
    if exp > 0 then
      local ttl = redis.call('PTTL', key)
      if ttl < 0 or now + ttl < exp then redis.call('PEXPIREAT', key, exp) end
    end
  end
  pos = pos + 4 + 2 * n
end
return conflicts
"""
# Watermarks only move forward: SET when absent or smaller.
RAISE_LUA = """
local cur = redis.call('GET', KEYS[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# One tile hash: HSET its fields (whole values), then move its expiry (ms) forward only.
# ARGV[1]: expire at (ms), then field/value pairs.
TILE_SET_LUA = """
local args = {}
for j = 2, #ARGV do args[#args + 1] = ARGV[j] end
redis.call('HSET', KEYS[1], unpack(args))
local exp = tonumber(ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if ttl < 0 or now_ms + ttl < exp then redis.call('PEXPIREAT', KEYS[1], exp) end
return 1
"""

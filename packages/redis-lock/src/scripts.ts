// The Lua run on each node. Every script touches only the keys it is given, so a Cluster node takes them when they
// share a hash tag (see `keysFor` in redlock.ts).

/**
 * Acquire, all or nothing on this node. KEYS: n lock keys, then their n fencing counters. ARGV: value, ttl ms.
 * Returns {1, c, low} when granted (c = the highest counter after its INCR, low = the lowest), {0, c} when a key is
 * held (c = the highest counter as it is: a node that refuses still tells what it has seen, see redlock.ts).
 */
export const ACQUIRE = `
local n = #KEYS / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local seen = 0
    for j = 1, n do
      local c = tonumber(redis.call('GET', KEYS[n + j]) or '0')
      if c > seen then seen = c end
    end
    return {0, seen}
  end
end
local token = 0
local low = -1
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  local c = redis.call('INCR', KEYS[n + i])
  if c > token then token = c end
  if low < 0 or c < low then low = c end
end
return {1, token, low}
`

/**
 * Raises the fencing counters to at least ARGV[1] (the token the lock was given), so every later acquisition on a
 * node of this quorum counts from above it. KEYS: the n counters. Returns 1.
 */
export const RAISE = `
local token = tonumber(ARGV[1])
for i = 1, #KEYS do
  local c = tonumber(redis.call('GET', KEYS[i]) or '0')
  if c < token then redis.call('SET', KEYS[i], token) end
end
return 1
`

/** Deletes the lock keys that still hold ARGV[1] (this lock's value). KEYS: the lock keys. Returns how many. */
export const RELEASE = `
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
`

/** Extends to ARGV[2] ms only if every lock key still holds ARGV[1]. KEYS: the lock keys. Returns 1 or 0. */
export const EXTEND = `
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then return 0 end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
`

/**
 * Fencing check on a Redis-backed resource. KEYS[1]: a hash {token, value}. ARGV: value, token. Writes and returns 1
 * unless the stored token is higher (a newer holder wrote already): then returns 0 and writes nothing.
 */
export const SET_IF_FRESHER = `
local stored = tonumber(redis.call('HGET', KEYS[1], 'token') or '-1')
local token = tonumber(ARGV[2])
if stored > token then return 0 end
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'value', ARGV[1])
return 1
`

#!lua name=distsync_queue
--[[
The queue's shard operations as a Redis Functions library, for a real
redis-server (7.0 or later). Each function does exactly what the stand-in
does for one ShardCall (src/queue/functions.rs, dispatched by `run` in
src/queue/shard.rs): the same keys, the same writes, the same answer.
src/queue/lua.rs builds the FCALL for a call and decodes the reply;
src/real/redis_diff.rs runs both side by side and compares them.

Calling convention, for every function but distsync_queue_version:
- ARGV[1] is the shard's clock in ns, chosen by the caller and never read
  from TIME, so a run on a real server is as deterministic as the stand-in.
- A partition's functions take its eight keys, all under the hash tag
  {q<P>} so they live in one Redis Cluster slot, in this order:
  ready, body, attempts, inflight, dead, last, moved, imported.
- The memory functions take cache:<K> and cache-fence:<K>.
- A reply is an array whose first element names its kind: stored,
  delivered, settled, frozen, done, memory, or moved (a refusal).

Numbers (times, sequence numbers, epochs) are unsigned 64-bit decimals
kept as strings: Lua's numbers are doubles, exact only below 2^53, and a
clock in ns since the unix epoch is far past that.

Bump VERSION (and LIBRARY_VERSION in src/queue/lua.rs, which a unit test
holds equal to it) whenever a function's arguments, replies or effects
change, so a node can tell that a server runs another library than its own.
]]

local VERSION = 1

local U64_MAX = '18446744073709551615'

-- Key positions of a partition's functions.
local READY, BODY, ATTEMPTS, INFLIGHT, DEAD, LAST, MOVED, IMPORTED = 1, 2, 3, 4, 5, 6, 7, 8
local PARTITION_KEYS = 8

-- Compares two canonical decimals: -1, 0 or 1. Byte by byte, since Lua's
-- string `<` follows the server's locale.
local function cmp(a, b)
  if #a ~= #b then
    return #a < #b and -1 or 1
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y and -1 or 1
    end
  end
  return 0
end

-- An unsigned decimal read as Rust's str::parse::<u64> reads one (an
-- optional '+', at least one digit, nothing else, no overflow), in
-- canonical form (no sign, no leading zeros); nil if it is not one.
local function u64(s)
  if type(s) ~= 'string' then
    return nil
  end
  if string.sub(s, 1, 1) == '+' then
    s = string.sub(s, 2)
  end
  if s == '' or string.find(s, '%D') then
    return nil
  end
  local digits = string.gsub(s, '^0+', '')
  if digits == '' then
    return '0'
  end
  if cmp(digits, U64_MAX) > 0 then
    return nil
  end
  return digits
end

-- Strips leading zeros from the digits d[n] .. d[1] (most significant last).
local function digits_to_string(d)
  local n = #d
  while n > 1 and d[n] == 0 do
    n = n - 1
  end
  local out = {}
  for i = n, 1, -1 do
    out[#out + 1] = string.char(48 + d[i])
  end
  return table.concat(out)
end

-- a + b, saturating at 2^64 - 1 as Rust's u64::saturating_add does.
local function add(a, b)
  local d, carry = {}, 0
  local i, j = #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local x = carry
    if i > 0 then
      x = x + string.byte(a, i) - 48
      i = i - 1
    end
    if j > 0 then
      x = x + string.byte(b, j) - 48
      j = j - 1
    end
    d[#d + 1] = x % 10
    carry = x >= 10 and 1 or 0
  end
  local sum = digits_to_string(d)
  if cmp(sum, U64_MAX) > 0 then
    return U64_MAX
  end
  return sum
end

-- a - b, or 0 if b > a, as Rust's u64::saturating_sub.
local function sub(a, b)
  if cmp(a, b) <= 0 then
    return '0'
  end
  local d, borrow = {}, 0
  local j = #b
  for i = #a, 1, -1 do
    local x = string.byte(a, i) - 48 - borrow
    if j > 0 then
      x = x - (string.byte(b, j) - 48)
      j = j - 1
    end
    if x < 0 then
      x = x + 10
      borrow = 1
    else
      borrow = 0
    end
    d[#d + 1] = x
  end
  return digits_to_string(d)
end

-- A sorted set score (a double) as Rust's `f64 as u64` converts it:
-- truncated, NaN and negatives 0, 2^64 and beyond the largest u64. A
-- double that large is an integer, and %.0f prints it exactly.
local function from_double(x)
  if x == nil or x ~= x or x <= 0 then
    return '0'
  end
  if x >= 18446744073709551616 then
    return U64_MAX
  end
  return string.format('%.0f', math.floor(x))
end

-- At most 2^32 - 1, as Rust's parse::<u32>; nil otherwise.
local function u32(s)
  local n = u64(s)
  if n and cmp(n, '4294967295') <= 0 then
    return n
  end
  return nil
end

-- ARGV[i] as a canonical decimal, or the call fails naming it.
local function arg_u64(args, i, what)
  local n = u64(args[i])
  if not n then
    error('distsync_queue: argument ' .. i .. ' (' .. what .. ') must be an unsigned 64-bit decimal, got ' .. tostring(args[i]))
  end
  return n
end

local function need_keys(keys, n, fn)
  if #keys ~= n then
    error('distsync_queue: ' .. fn .. ' takes ' .. n .. ' keys, got ' .. #keys)
  end
end

-- Runs `cmd key items...` unless there are no items (Redis rejects a push,
-- HSET, ZADD or ZREM without elements, and there is nothing to do). Sent in
-- slices because unpack() gives only a few thousand values at once; a
-- slice is even-sized, so field/value and score/member pairs stay whole,
-- and every command used this way has the effect of one call on the whole.
local function call_with(cmd, key, items)
  local slice = 1000
  for first = 1, #items, slice do
    redis.call(cmd, key, unpack(items, first, math.min(first + slice - 1, #items)))
  end
end

-- The flat field/value reply of HGETALL as a table.
local function as_hash(flat)
  local h = {}
  for i = 1, #flat, 2 do
    h[flat[i]] = flat[i + 1]
  end
  return h
end

-- A number kept under `key`, 0 when missing or not a number.
local function stored_number(key)
  return u64(redis.call('GET', key)) or '0'
end

-- Deliveries a message has had (0 when unknown).
local function attempts(keys, id)
  return u32(redis.call('HGET', keys[ATTEMPTS], id)) or '0'
end

-- Raises `moved` to `epoch`; a later epoch already there is kept.
local function mark_moved(keys, epoch)
  local raw = redis.call('GET', keys[MOVED])
  if not raw or cmp(u64(raw) or '0', epoch) < 0 then
    redis.call('SET', keys[MOVED], epoch)
  end
end

local function del_data(keys, with_moved)
  local last = with_moved and MOVED or LAST
  local names = {}
  for i = READY, last do
    names[#names + 1] = keys[i]
  end
  redis.call('DEL', unpack(names))
end

-- ARGV: now, producer, first_seq, body... Stores the bodies whose sequence
-- number is past the producer's last stored one, so a retried batch is not
-- enqueued twice. Reply: stored, count stored, count duplicate.
local function produce(keys, args)
  need_keys(keys, PARTITION_KEYS, 'produce')
  local producer = arg_u64(args, 2, 'producer')
  local first = arg_u64(args, 3, 'first_seq')
  local moved = redis.call('GET', keys[MOVED])
  if moved then
    return { 'moved', moved }
  end
  local last = u64(redis.call('HGET', keys[LAST], producer))
  local ids, bodies, counts = {}, {}, {}
  local duplicate, top = 0, nil
  for i = 4, #args do
    local seq = add(first, tostring(i - 4))
    if last and cmp(seq, last) <= 0 then
      duplicate = duplicate + 1
    else
      local id = producer .. ':' .. seq
      ids[#ids + 1] = id
      bodies[#bodies + 1] = id
      bodies[#bodies + 1] = args[i]
      counts[#counts + 1] = id
      counts[#counts + 1] = '0'
      top = seq
    end
  end
  if #ids == 0 then
    return { 'stored', 0, duplicate }
  end
  call_with('HSET', keys[BODY], bodies)
  call_with('HSET', keys[ATTEMPTS], counts)
  call_with('RPUSH', keys[READY], ids)
  redis.call('HSET', keys[LAST], producer, top)
  return { 'stored', #ids, duplicate }
end

-- Takes every in-flight message whose deadline is at or before `now` out
-- of flight: back to the head of ready (earliest-expired first), or to the
-- dead letters once it has had max_attempts deliveries.
local function expire_inflight(keys, now, max_attempts)
  local due = redis.call('ZRANGEBYSCORE', keys[INFLIGHT], '-inf', now)
  call_with('ZREM', keys[INFLIGHT], due)
  local back, dead = {}, {}
  for _, id in ipairs(due) do
    if cmp(attempts(keys, id), max_attempts) >= 0 then
      dead[#dead + 1] = id
    else
      back[#back + 1] = id
    end
  end
  -- LPUSH puts each element at the head in turn: pushing the latest-expired
  -- first leaves the earliest-expired first in line.
  local reversed = {}
  for i = #back, 1, -1 do
    reversed[#reversed + 1] = back[i]
  end
  call_with('LPUSH', keys[READY], reversed)
  call_with('RPUSH', keys[DEAD], dead)
end

-- ARGV: now, max, visibility_ns, max_attempts, honour_visibility (1 or 0).
-- Expires overdue in-flight messages (when honouring visibility), then
-- hands out up to `max` from the head of ready, each in flight until
-- now + visibility. Reply: delivered, then id, body, attempt per message.
local function consume(keys, args)
  need_keys(keys, PARTITION_KEYS, 'consume')
  local now = arg_u64(args, 1, 'now_ns')
  local max = arg_u64(args, 2, 'max')
  local visibility = arg_u64(args, 3, 'visibility_ns')
  local max_attempts = arg_u64(args, 4, 'max_attempts')
  local moved = redis.call('GET', keys[MOVED])
  if moved then
    return { 'moved', moved }
  end
  if args[5] == '1' then
    expire_inflight(keys, now, max_attempts)
  end
  local out = { 'delivered' }
  if max == '0' then
    return out
  end
  local popped = redis.call('LPOP', keys[READY], max) or {}
  local deadline = add(now, visibility)
  for _, id in ipairs(popped) do
    local count = redis.call('HINCRBY', keys[ATTEMPTS], id, 1)
    local body = redis.call('HGET', keys[BODY], id)
    redis.call('ZADD', keys[INFLIGHT], deadline, id)
    out[#out + 1] = id
    out[#out + 1] = body or ''
    out[#out + 1] = count
  end
  return out
end

-- ARGV: now, max_attempts, number of acks, the acked ids, the nacked ids.
-- An ack completes an in-flight message; a nack gives one back (to the
-- head of ready, or to the dead letters once out of attempts). Ids not in
-- flight are skipped. Reply: settled, how many acks found their message.
local function settle(keys, args)
  need_keys(keys, PARTITION_KEYS, 'settle')
  local max_attempts = arg_u64(args, 2, 'max_attempts')
  local acks = tonumber(arg_u64(args, 3, 'number of acks'))
  if 3 + acks > #args then
    error('distsync_queue: settle has ' .. acks .. ' acks but only ' .. (#args - 3) .. ' ids')
  end
  -- The stand-in checks the fence before each id, so a settle of nothing
  -- is answered even on a partition that moved.
  if #args > 3 then
    local moved = redis.call('GET', keys[MOVED])
    if moved then
      return { 'moved', moved }
    end
  end
  local done = 0
  for i = 4, 3 + acks do
    if redis.call('ZREM', keys[INFLIGHT], args[i]) == 1 then
      redis.call('HDEL', keys[BODY], args[i])
      redis.call('HDEL', keys[ATTEMPTS], args[i])
      done = done + 1
    end
  end
  for i = 4 + acks, #args do
    if redis.call('ZREM', keys[INFLIGHT], args[i]) == 1 then
      if cmp(attempts(keys, args[i]), max_attempts) >= 0 then
        redis.call('RPUSH', keys[DEAD], args[i])
      else
        redis.call('LPUSH', keys[READY], args[i])
      end
    end
  end
  return { 'settled', done }
end

-- ARGV: now, epoch, include_inflight (1 or 0). Unless a move of this epoch
-- or a later one brought the partition here, fences it at `epoch` and
-- returns its content, keeping it until a drop. Reply: frozen, then the
-- ready, in-flight and dead entries (id, body, attempts; in flight also the
-- ns of visibility left) and the flat `last` hash.
local function freeze(keys, args)
  need_keys(keys, PARTITION_KEYS, 'freeze')
  local now = arg_u64(args, 1, 'now_ns')
  local epoch = arg_u64(args, 2, 'epoch')
  if cmp(stored_number(keys[IMPORTED]), epoch) >= 0 then
    return { 'moved', epoch }
  end
  mark_moved(keys, epoch)
  local bodies = as_hash(redis.call('HGETALL', keys[BODY]))
  local counts = as_hash(redis.call('HGETALL', keys[ATTEMPTS]))
  local function entries(ids)
    local out = {}
    for _, id in ipairs(ids) do
      out[#out + 1] = id
      out[#out + 1] = bodies[id] or ''
      out[#out + 1] = tonumber(u32(counts[id]) or '0')
    end
    return out
  end
  local inflight = {}
  if args[3] == '1' then
    local scored = redis.call('ZRANGEBYSCORE', keys[INFLIGHT], '-inf', '+inf', 'WITHSCORES')
    for i = 1, #scored, 2 do
      local id = scored[i]
      inflight[#inflight + 1] = id
      inflight[#inflight + 1] = bodies[id] or ''
      inflight[#inflight + 1] = tonumber(u32(counts[id]) or '0')
      inflight[#inflight + 1] = sub(from_double(tonumber(scored[i + 1])), now)
    end
  end
  return {
    'frozen',
    entries(redis.call('LRANGE', keys[READY], 0, -1)),
    inflight,
    entries(redis.call('LRANGE', keys[DEAD], 0, -1)),
    redis.call('HGETALL', keys[LAST]),
  }
end

-- ARGV: now, epoch, the counts of ready, in-flight, dead and `last`
-- entries, then the entries: ready (id, body, attempts), in flight (id,
-- body, attempts, ns of visibility left), dead (id, body, attempts), last
-- (producer, seq). Unless this epoch's import (or a later one) already
-- happened, makes this shard the partition's owner with exactly that
-- content, lifting any fence. Reply: done.
local function import(keys, args)
  need_keys(keys, PARTITION_KEYS, 'import')
  local now = arg_u64(args, 1, 'now_ns')
  local epoch = arg_u64(args, 2, 'epoch')
  local n_ready = tonumber(arg_u64(args, 3, 'ready entries'))
  local n_inflight = tonumber(arg_u64(args, 4, 'in-flight entries'))
  local n_dead = tonumber(arg_u64(args, 5, 'dead entries'))
  local n_last = tonumber(arg_u64(args, 6, 'last entries'))
  local want = 6 + 3 * n_ready + 4 * n_inflight + 3 * n_dead + 2 * n_last
  if #args ~= want then
    error('distsync_queue: import expects ' .. want .. ' arguments, got ' .. #args)
  end
  if cmp(stored_number(keys[IMPORTED]), epoch) >= 0 then
    return { 'done' }
  end
  del_data(keys, true)
  local bodies, counts, ready, dead, scores, last = {}, {}, {}, {}, {}, {}
  local at = 7
  local function entry(width)
    local id = args[at]
    bodies[#bodies + 1] = id
    bodies[#bodies + 1] = args[at + 1]
    counts[#counts + 1] = id
    counts[#counts + 1] = args[at + 2]
    if width == 4 then
      scores[#scores + 1] = add(now, arg_u64(args, at + 3, 'visibility left'))
      scores[#scores + 1] = id
    end
    at = at + width
    return id
  end
  for _ = 1, n_ready do
    ready[#ready + 1] = entry(3)
  end
  for _ = 1, n_inflight do
    entry(4)
  end
  for _ = 1, n_dead do
    dead[#dead + 1] = entry(3)
  end
  for _ = 1, 2 * n_last do
    last[#last + 1] = args[at]
    at = at + 1
  end
  call_with('HSET', keys[BODY], bodies)
  call_with('HSET', keys[ATTEMPTS], counts)
  call_with('RPUSH', keys[READY], ready)
  call_with('RPUSH', keys[DEAD], dead)
  call_with('ZADD', keys[INFLIGHT], scores)
  call_with('HSET', keys[LAST], last)
  redis.call('SET', keys[IMPORTED], epoch)
  return { 'done' }
end

-- ARGV: now, epoch. Unless a move of this epoch or a later one brought the
-- partition here, deletes its data and keeps the fence (at least `epoch`)
-- so stale clients are still told where it went. Reply: done.
local function drop(keys, args)
  need_keys(keys, PARTITION_KEYS, 'drop')
  local epoch = arg_u64(args, 2, 'epoch')
  if cmp(stored_number(keys[IMPORTED]), epoch) >= 0 then
    return { 'done' }
  end
  del_data(keys, false)
  mark_moved(keys, epoch)
  return { 'done' }
end

-- Raises a cache key's fence to `fence` (the asking home's incarnation)
-- and returns the fence it had before.
local function raise_fence(keys, fence)
  local known = stored_number(keys[2])
  if cmp(known, fence) < 0 then
    redis.call('SET', keys[2], fence)
  end
  return known
end

-- ARGV: now, fence. Raises the key's fence and reads it. Reply: memory,
-- then "version:value" or nil.
local function memget(keys, args)
  need_keys(keys, 2, 'memget')
  raise_fence(keys, arg_u64(args, 2, 'fence'))
  return { 'memory', redis.call('GET', keys[1]) }
end

-- ARGV: now, value, version, fence. Raises the key's fence; writes the
-- value unless the fence was already past this writer's or memory holds a
-- newer version. Reply: memory, then what memory holds now.
local function memset(keys, args)
  need_keys(keys, 2, 'memset')
  local value = arg_u64(args, 2, 'value')
  local version = arg_u64(args, 3, 'version')
  local fence = arg_u64(args, 4, 'fence')
  local known = raise_fence(keys, fence)
  if cmp(fence, known) >= 0 then
    local held = redis.call('GET', keys[1])
    local older = true
    if held then
      local colon = string.find(held, ':', 1, true)
      local v = colon and u64(string.sub(held, 1, colon - 1))
      local x = colon and u64(string.sub(held, colon + 1))
      -- A value memory cannot read counts as none, as in the stand-in.
      older = not (v and x) or cmp(version, v) >= 0
    end
    if older then
      redis.call('SET', keys[1], version .. ':' .. value)
    end
  end
  return { 'memory', redis.call('GET', keys[1]) }
end

redis.register_function('distsync_produce', produce)
redis.register_function('distsync_consume', consume)
redis.register_function('distsync_settle', settle)
redis.register_function('distsync_freeze', freeze)
redis.register_function('distsync_import', import)
redis.register_function('distsync_drop', drop)
redis.register_function('distsync_memget', memget)
redis.register_function('distsync_memset', memset)
redis.register_function {
  function_name = 'distsync_queue_version',
  callback = function()
    return VERSION
  end,
  flags = { 'no-writes' },
}

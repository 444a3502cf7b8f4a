"""Lua scripts of the Redis channel layer: each layer operation is one atomic round trip.

Theory of operation
===================

Every key starts with the layer's ``prefix`` (``P``, default ``"asgi:"``). Channel and
group names cannot hold ``:`` (asgi1.md §2), so the namespaces below never collide.

=====================  ==========  ========================================================
key                    type        meaning
=====================  ==========  ========================================================
``P q:<queue>``        zset        pending messages of one queue. ``<queue>`` is the channel
                                   name, or for a process channel ``pre!loc`` its prefix
                                   ``pre!`` (one key per process). Member = 16 hex digits of
                                   the message id + the local part (``loc``, empty for other
                                   channels); score = the message's own deadline in ms.
``P n:<pre!loc>``      zset        live messages of one process channel's *full* name (id,
                                   deadline): capacity counts per full name (asgi1.md §4).
``P m:<id>``           hash        ``body:`` = body; one field per recipient channel that has
                                   not read it yet. Expires (PX) at the message deadline.
``P w:<queue>``        list        wake-up tokens: one per queued message, trimmed to the
                                   queue length by readers. Blocking receivers BLPOP here.
``P g:<group>``        zset        members; score = time of the last ``group_add`` in ms.
``P cg:<channel>``     set         groups ``<channel>`` is in (reverse index, so a channel
                                   whose message expired unread can leave every group).
``P pg:<pre!>``        set         full names of a process that have a ``cg:`` entry, so
                                   ``discard_prefix`` finds them without SCAN.
``P cs:<queue>``       hash        counters ``messages``/``full`` of one queue (statistics).
``P stats``            hash        the same counters for the whole shard.
``P seq``              string      message id counter (INCR).
``P epoch``            string      random id set at first use; gone = data was lost.
=====================  ==========  ========================================================

Invariants (each kept by the scripts below, which Redis runs atomically):

- A message is delivered at most once: ``ZPOPMIN`` removes its queue entry in the same
  script that reads its body, and a body is only read through a popped entry.
- A message is never delivered after its own deadline: the score is the deadline, and
  readers drop every entry whose score is ``<= now`` before popping. Nothing ever raises a
  score, so a later send cannot extend an earlier message's life; the body hash's TTL only
  frees memory.
- Capacity counts live entries only: expired ones are removed (``ZREMRANGEBYSCORE``)
  before ``ZCARD``.
- A channel whose message is found expired unread leaves every group (asgi1.md §4): the
  finder walks ``cg:<channel>``. With several shards a group may live elsewhere; the
  scripts also return ``{group, channel}`` pairs so the client removes them there.
- The queue (``q:``/``n:``) key of a channel that is in a group lives as long as its
  ``cg:`` entry, so an expired message is still there to be noticed by the next
  ``send_group``; other queue keys die ``expiry`` after their last send.
- Time is Redis's ``TIME``, never a client clock, so hosts with skewed clocks agree.

Readers never call a command Redis refuses under ``maxmemory`` (``denyoom``): a full
Redis can always be drained. Only sends and ``group_add`` fail then, and before they
write anything: Redis checks a script for OOM only until its first write command, so
each writing script *starts* with a ``denyoom`` command (``INCR seq`` for sends, ``ZADD``
or ``SADD`` for ``group_add``) as its gate.

Scripts touch keys they compute, so they run on a standalone Redis (or one shard per
``hosts`` entry), not on Redis Cluster.
"""

from __future__ import annotations

__all__ = [
    "CHANNEL_STATS",
    "DISCARD_PREFIX",
    "GROUP_ADD",
    "GROUP_CHANNELS",
    "GROUP_DISCARD",
    "RECEIVE",
    "SEND",
    "SEND_GROUP",
]

# Shared functions, prepended to every script. ARGV[1] is always the key prefix.
_PRELUDE = r"""
local P = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- queue name and local part of a channel: 'pre!loc' -> 'pre!', 'loc'
local function split(channel)
  local bang = string.find(channel, '!', 1, true)
  if bang then
    return string.sub(channel, 1, bang), string.sub(channel, bang + 1)
  end
  return channel, ''
end

-- the zset whose live entries are this channel's capacity count
local function count_key(channel, loc)
  if loc ~= '' then return P .. 'n:' .. channel end
  return P .. 'q:' .. channel
end

-- drop a channel from every group it is in; appends {group, channel} pairs to drops
local function leave_groups(channel, drops)
  local ck = P .. 'cg:' .. channel
  local groups = redis.call('SMEMBERS', ck)
  for _, g in ipairs(groups) do
    redis.call('ZREM', P .. 'g:' .. g, channel)
    table.insert(drops, g)
    table.insert(drops, channel)
  end
  if #groups > 0 then redis.call('DEL', ck) end
  local queue, loc = split(channel)
  if loc ~= '' then redis.call('SREM', P .. 'pg:' .. queue, channel) end
  return drops
end

-- keep a queue key alive past its newest deadline, and as long as the channel's
-- group memberships so an expiry is still detectable by the next send_group
local function keep(key, channel, expiry_ms)
  local ttl = redis.call('PTTL', P .. 'cg:' .. channel)
  if ttl < expiry_ms then ttl = expiry_ms end
  redis.call('PEXPIRE', key, ttl + 1000)
end

-- queue one message id on one channel.
-- returns 1 queued, 0 full, -1 (from_group only) skipped: it had expired unread messages
local function deliver(channel, id, now, expiry_ms, capacity, from_group, drops)
  local queue, loc = split(channel)
  local ck = count_key(channel, loc)
  local expired = redis.call('ZREMRANGEBYSCORE', ck, '-inf', now)
  if expired > 0 then
    leave_groups(channel, drops)
    if from_group then return -1 end
  end
  local stats = P .. 'cs:' .. queue
  if redis.call('ZCARD', ck) >= capacity then
    redis.call('HINCRBY', stats, 'full', 1)
    redis.call('PEXPIRE', stats, 3600000)
    return 0
  end
  local deadline = now + expiry_ms
  local qk = P .. 'q:' .. queue
  redis.call('ZADD', qk, deadline, id .. loc)
  if loc ~= '' then
    redis.call('ZADD', ck, deadline, id)
    keep(ck, channel, expiry_ms)
    redis.call('PEXPIRE', qk, expiry_ms + 1000)
  else
    keep(qk, channel, expiry_ms)
  end
  local wk = P .. 'w:' .. queue
  local tokens = redis.call('RPUSH', wk, '1')
  if tokens == 1 then
    redis.call('PEXPIRE', wk, expiry_ms + 1000)
  elseif tokens > 1024 then
    redis.call('LTRIM', wk, -1024, -1)
  end
  redis.call('HINCRBY', stats, 'messages', 1)
  redis.call('PEXPIRE', stats, 3600000)
  return 1
end

-- shard-wide counters, once per script rather than once per recipient
local function count(queued, full)
  if queued > 0 then redis.call('HINCRBY', P .. 'stats', 'messages', queued) end
  if full > 0 then redis.call('HINCRBY', P .. 'stats', 'full', full) end
end

local function new_id()
  return string.format('%016x', redis.call('INCR', P .. 'seq'))
end
"""

#: send(P, channel, body, expiry_ms, capacity) -> {1 queued | 0 full, drops}
SEND = _PRELUDE + r"""
local channel, body = ARGV[2], ARGV[3]
local expiry_ms, capacity = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local id = new_id()
local drops = {}
local status = deliver(channel, id, now, expiry_ms, capacity, false, drops)
if status == 1 then
  local mk = P .. 'm:' .. id
  redis.call('HSET', mk, 'body:', body, channel, '')
  redis.call('PEXPIRE', mk, expiry_ms)
  count(1, 0)
else
  count(0, 1)
end
return {status, drops}
"""

#: send_group(P, body, expiry_ms, group, group_expiry_ms, capacity [, x, capacity]...)
#: With a group name: deliver to its live members; the pairs are (Lua pattern, capacity),
#: first match wins, else ``capacity`` (``channel_capacity`` globs, translated). With group
#: '' deliver to the listed (channel, capacity) pairs (members on several shards, or
#: ``channel_capacity`` holding a regex). -> {queued, full, drops}
SEND_GROUP = _PRELUDE + r"""
local body, expiry_ms = ARGV[2], tonumber(ARGV[3])
local group, group_expiry_ms = ARGV[4], tonumber(ARGV[5])
local now = now_ms()
local id = new_id()  -- first: the OOM gate (see the module docstring)
local targets = {}
if group ~= '' then
  local gk = P .. 'g:' .. group
  redis.call('ZREMRANGEBYSCORE', gk, '-inf', now - group_expiry_ms)
  local default = tonumber(ARGV[6])
  for _, channel in ipairs(redis.call('ZRANGE', gk, 0, -1)) do
    local capacity = default
    for i = 7, #ARGV, 2 do
      if string.find(channel, ARGV[i]) then
        capacity = tonumber(ARGV[i + 1])
        break
      end
    end
    table.insert(targets, {channel, capacity})
  end
else
  for i = 7, #ARGV, 2 do
    table.insert(targets, {ARGV[i], tonumber(ARGV[i + 1])})
  end
end
if #targets == 0 then return {0, 0, {}} end
local mk = P .. 'm:' .. id
local fields = {'body:', body}
local queued, full, drops = 0, 0, {}
for _, t in ipairs(targets) do
  local status = deliver(t[1], id, now, expiry_ms, t[2], true, drops)
  if status == 1 then
    queued = queued + 1
    table.insert(fields, t[1])
    table.insert(fields, '')
  elseif status == 0 then
    full = full + 1
  end
end
if queued > 0 then
  -- in slices: Lua's unpack() is limited to a few thousand values
  for i = 1, #fields, 1000 do
    redis.call('HSET', mk, unpack(fields, i, math.min(i + 999, #fields)))
  end
  redis.call('PEXPIRE', mk, expiry_ms)
end
count(queued, full)
return {queued, full, drops}
"""

#: receive(P, queue...) -> {channel | false, body | false, drops}. Tries the queues in the
#: order given (the client shuffles them, so a busy channel cannot starve a quiet one).
RECEIVE = _PRELUDE + r"""
local now = now_ms()
local drops = {}
for i = 2, #ARGV do
  local queue = ARGV[i]
  local qk = P .. 'q:' .. queue
  local is_process = string.sub(queue, -1) == '!'
  local old = redis.call('ZRANGEBYSCORE', qk, '-inf', now)
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', qk, '-inf', now)
    local seen = {}
    for _, member in ipairs(old) do
      local channel = queue .. string.sub(member, 17)
      if not seen[channel] then
        seen[channel] = true
        leave_groups(channel, drops)
      end
      if is_process then redis.call('ZREM', P .. 'n:' .. channel, string.sub(member, 1, 16)) end
    end
  end
  while true do
    local popped = redis.call('ZPOPMIN', qk)
    if #popped == 0 then break end
    local id, loc = string.sub(popped[1], 1, 16), string.sub(popped[1], 17)
    local channel = queue .. loc
    if is_process then redis.call('ZREM', P .. 'n:' .. channel, id) end
    local mk = P .. 'm:' .. id
    local body = redis.call('HGET', mk, 'body:')
    if body then
      redis.call('HDEL', mk, channel)
      if redis.call('HLEN', mk) <= 1 then redis.call('DEL', mk) end
      local left = redis.call('ZCARD', qk)
      if left == 0 then
        redis.call('DEL', P .. 'w:' .. queue)
      else
        redis.call('LTRIM', P .. 'w:' .. queue, -left, -1)
      end
      return {channel, body, drops}
    end
  end
  redis.call('DEL', P .. 'w:' .. queue)
end
return {false, false, drops}
"""

#: group_add(P, group, channel, group_expiry_ms, expiry_ms, on_group, on_channel)
#: on_group: stamp the membership (group's shard); on_channel: the reverse index
#: (channel's shard). One shard: both in one call.
GROUP_ADD = _PRELUDE + r"""
local group, channel = ARGV[2], ARGV[3]
local group_expiry_ms, expiry_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
if ARGV[6] == '1' then
  local gk = P .. 'g:' .. group
  redis.call('ZADD', gk, now_ms(), channel)
  redis.call('PEXPIRE', gk, group_expiry_ms)
end
if ARGV[7] == '1' then
  local ck = P .. 'cg:' .. channel
  redis.call('SADD', ck, group)
  redis.call('PEXPIRE', ck, group_expiry_ms)
  local queue, loc = split(channel)
  if loc ~= '' then
    local pk = P .. 'pg:' .. queue
    redis.call('SADD', pk, channel)
    if redis.call('PTTL', pk) < group_expiry_ms then redis.call('PEXPIRE', pk, group_expiry_ms) end
  end
  local qk = count_key(channel, loc)
  if redis.call('EXISTS', qk) == 1 then keep(qk, channel, expiry_ms) end
end
return 1
"""

#: group_discard(P, group, channel, on_group, on_channel)
GROUP_DISCARD = _PRELUDE + r"""
local group, channel = ARGV[2], ARGV[3]
if ARGV[4] == '1' then redis.call('ZREM', P .. 'g:' .. group, channel) end
if ARGV[5] == '1' then
  local ck = P .. 'cg:' .. channel
  redis.call('SREM', ck, group)
  local queue, loc = split(channel)
  -- the last membership gone: forget the channel in its process's index too
  if loc ~= '' and redis.call('EXISTS', ck) == 0 then redis.call('SREM', P .. 'pg:' .. queue, channel) end
end
return 1
"""

#: group_channels(P, group, group_expiry_ms) -> live members
GROUP_CHANNELS = _PRELUDE + r"""
local gk = P .. 'g:' .. ARGV[2]
redis.call('ZREMRANGEBYSCORE', gk, '-inf', now_ms() - tonumber(ARGV[3]))
return redis.call('ZRANGE', gk, 0, -1)
"""

#: discard_prefix(P, 'pre!') -> drops: drop the process's queue, bodies, counts and
#: memberships (the master calls this when an interface process died).
DISCARD_PREFIX = _PRELUDE + r"""
local queue = ARGV[2]
local qk = P .. 'q:' .. queue
for _, member in ipairs(redis.call('ZRANGE', qk, 0, -1)) do
  local id, loc = string.sub(member, 1, 16), string.sub(member, 17)
  local mk = P .. 'm:' .. id
  redis.call('HDEL', mk, queue .. loc)
  if redis.call('HLEN', mk) <= 1 then redis.call('DEL', mk) end
  redis.call('DEL', P .. 'n:' .. queue .. loc)
end
redis.call('DEL', qk, P .. 'w:' .. queue, P .. 'cs:' .. queue)
local drops = {}
local pk = P .. 'pg:' .. queue
for _, channel in ipairs(redis.call('SMEMBERS', pk)) do
  leave_groups(channel, drops)
end
redis.call('DEL', pk)
return drops
"""

#: channel_statistics(P, channel, expiry_ms) -> {pending, max_age_ms, messages, full}
CHANNEL_STATS = _PRELUDE + r"""
local channel, expiry_ms = ARGV[2], tonumber(ARGV[3])
local queue, loc = split(channel)
local ck = count_key(channel, loc)
local now = now_ms()
local pending = redis.call('ZCOUNT', ck, '(' .. now, '+inf')
local age = 0
local oldest = redis.call('ZRANGEBYSCORE', ck, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if #oldest > 0 then
  age = expiry_ms - (tonumber(oldest[2]) - now)
  if age < 0 then age = 0 end
end
local counters = redis.call('HMGET', P .. 'cs:' .. queue, 'messages', 'full')
return {pending, age, counters[1] or 0, counters[2] or 0}
"""

/**
 * The script that writes a batch of a distributor's spool, and claims and releases the
 * group's unique keys in the same atomic step (docs/redis.md, "Distributor groups").
 *
 * KEYS: the member's spool, the group's unique hash, its id → scope hash, its throttle set
 * (one slot: the group's hash tag). ARGV[1]: one msgpack array of strs, the operations in
 * order; ARGV[2]: the member's name, recorded with each key it claims.
 *
 *   s id record                        spool a job, or replace its record
 *   r id                               the job left the spool
 *   u id record scope def ttlMs sched  claim unique scope `scope` (job name \0 key) for the job
 *                                      and spool it if the claim holds; `def` identifies a
 *                                      schedule's definition, `sched` is 1 for a schedule
 *   x id                               the job ended: a key it holds until its end is released
 *
 * A holder is msgpack [id, member, def, expiresAt (epoch ms, 0: until released), sched,
 * replaced id, replaced member]. A claim holds when no live holder has the scope, or the
 * holder is the claiming job itself (a batch retried after a timeout that had landed: a
 * `c` is answered again from the replaced job the holder keeps, so that the retry's caller
 * still cancels it), or a schedule's definition changed (the claim takes the key: `c`).
 * Otherwise the job is not spooled (`d`).
 *
 * Returns a flat array, four strs per claim that did not simply hold:
 *   id, 'd' | 'c', holder id, holder member
 *
 * Only each id's last `s`/`r` counts, applied as a few HSET/HDEL calls (a redis.call costs
 * more than the hash operation it makes); claims and releases apply in order, as they come.
 * Throttled keys whose time ran out are dropped, at most 100 per call, by a call that
 * claims: the clock is Redis's TIME, so members agree on it.
 */
export const SPOOL_APPLY_LUA = `
local v = cmsgpack.unpack(ARGV[1])
local spool, unique, ids, ttls = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local set, del, out = {}, {}, {}
local now
local function clock()
  if now == nil then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    for _, scope in ipairs(redis.call('ZRANGEBYSCORE', ttls, '-inf', now, 'LIMIT', 0, 100)) do
      local h = redis.call('HGET', unique, scope)
      if h then
        local holder = cmsgpack.unpack(h)
        if holder[4] > 0 and holder[4] <= now then
          redis.call('HDEL', unique, scope)
          if redis.call('HGET', ids, holder[1]) == scope then redis.call('HDEL', ids, holder[1]) end
        end
      end
      redis.call('ZREM', ttls, scope)
    end
  end
  return now
end
local function current(scope)
  local h = redis.call('HGET', unique, scope)
  if not h then return nil end
  local holder = cmsgpack.unpack(h)
  if holder[4] > 0 and holder[4] <= clock() then return nil end
  return holder
end
local i, size = 1, #v
while i <= size do
  local op, id = v[i], v[i + 1]
  if op == 's' then
    set[id] = v[i + 2]
    del[id] = nil
    i = i + 3
  elseif op == 'r' then
    set[id] = nil
    del[id] = true
    i = i + 2
  elseif op == 'u' then
    local record, scope, def, ttl, sched = v[i + 2], v[i + 3], v[i + 4], tonumber(v[i + 5]), tonumber(v[i + 6])
    i = i + 7
    local holder = current(scope)
    local holds = true
    local replaced = {}
    if holder and holder[1] == id then
      if holder[6] then
        out[#out + 1] = id
        out[#out + 1] = 'c'
        out[#out + 1] = holder[6]
        out[#out + 1] = holder[7]
      end
    elseif holder then
      if (sched == 1 or holder[5] == 1) and holder[3] ~= def then
        out[#out + 1] = id
        out[#out + 1] = 'c'
        out[#out + 1] = holder[1]
        out[#out + 1] = holder[2]
        replaced = {holder[1], holder[2]}
        redis.call('HDEL', ids, holder[1])
      else
        out[#out + 1] = id
        out[#out + 1] = 'd'
        out[#out + 1] = holder[1]
        out[#out + 1] = holder[2]
        holds = false
      end
    end
    if holds then
      if holder == nil or holder[1] ~= id then
        local expires = 0
        if ttl > 0 then
          expires = clock() + ttl
          redis.call('ZADD', ttls, expires, scope)
        end
        redis.call('HSET', unique, scope, cmsgpack.pack({id, ARGV[2], def, expires, sched, replaced[1], replaced[2]}))
        redis.call('HSET', ids, id, scope)
      end
      set[id] = record
      del[id] = nil
    end
  else
    i = i + 2
    local scope = redis.call('HGET', ids, id)
    if scope then
      redis.call('HDEL', ids, id)
      local h = redis.call('HGET', unique, scope)
      if h then
        local holder = cmsgpack.unpack(h)
        if holder[1] == id and holder[4] == 0 then redis.call('HDEL', unique, scope) end
      end
    end
  end
end
local args = {}
for id, record in pairs(set) do
  args[#args + 1] = id
  args[#args + 1] = record
  if #args >= 1000 then
    redis.call('HSET', spool, unpack(args))
    args = {}
  end
end
if #args > 0 then redis.call('HSET', spool, unpack(args)) end
args = {}
for id in pairs(del) do
  args[#args + 1] = id
  if #args >= 1000 then
    redis.call('HDEL', spool, unpack(args))
    args = {}
  end
end
if #args > 0 then redis.call('HDEL', spool, unpack(args)) end
return out
`

/** A claim that did not simply hold its key (see SPOOL_APPLY_LUA). */
export interface ClaimAnswer {
  /** The claiming job. */
  readonly id: string
  /** 'deduplicated': another job holds the key; 'rescheduled': the claim took it from a schedule defined otherwise. */
  readonly outcome: 'deduplicated' | 'rescheduled'
  /** The job that held the key, and the member that claimed it. */
  readonly holder: string
  readonly member: string
}

/** Reads the script's answer: four strs per claim. */
export function parseClaimAnswers(flat: unknown): ClaimAnswer[] {
  const answers: ClaimAnswer[] = []
  if (!Array.isArray(flat)) return answers
  for (let i = 0; i + 3 < flat.length; i += 4)
    answers.push({
      id: String(flat[i]),
      outcome: String(flat[i + 1]) === 'c' ? 'rescheduled' : 'deduplicated',
      holder: String(flat[i + 2]),
      member: String(flat[i + 3]),
    })
  return answers
}

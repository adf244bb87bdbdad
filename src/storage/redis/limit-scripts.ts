import { pack } from '../../protocol/msgpack.js'

/**
 * The Redis side of limits across a distributor group (docs/architecture.md, Limits; the
 * distributor side is src/distributor/spool/group-limits.ts): one script, called once per
 * event-loop turn by a member with every slot and start it asks for or gives back.
 *
 * A limit's keys (group-keys.ts) share the group's hash tag, as do the members' leases the
 * script reads, so the call is one atomic step in one Cluster slot:
 *   slots:<scope>  hash holder → slots it holds (a concurrency limit's semaphore)
 *   rate:<scope>   sorted set of starts `holder:seq`, scored by Redis time in ms (a rate's window)
 * A holder is one process of a member: its lease token (`<member>#<random>`, membership.ts).
 * WHY the token and not the name: a member restarted under the same name is another process,
 * which knows nothing of its predecessor's slots and starts; keyed by name, a dead process's
 * field would count again (and never be given back) once the new one holds the lease, and a
 * restart's `seq` 0 would re-score its predecessor's starts instead of adding its own.
 */

/** Set this member's slots of a scope to `target` (fewer: given back; more: asked for). */
export interface SlotsOp {
  readonly kind: 'slots'
  readonly scope: string
  readonly concurrency: number
  readonly target: number
  /** The slots its jobs could use (at least `target`): held fewer, it is marked waiting. */
  readonly wants: number
}

/** Ask for `want` starts of a rate's scope, first giving back the unused starts `giveBack`. */
export interface StartsOp {
  readonly kind: 'starts'
  readonly scope: string
  readonly max: number
  readonly perMs: number
  readonly want: number
  /**
   * The asker uses a start granted within this many ms of asking, or not at all: each start
   * counts in the window from the end of that grace (see LIMIT_GRANT_LUA).
   */
  readonly graceMs: number
  /** The first start asked for is `holder:seq`, the next `holder:seq+1`, ... */
  readonly seq: number
  readonly giveBack: readonly number[]
}

export type LimitOp = SlotsOp | StartsOp

/**
 * The answer to one operation, in order. Slots: `granted` is the slots this member holds
 * now; when fewer than its target, `waitMs` is the soonest lease of another holding member
 * to run out, else, when other members wait for slots (`waiting`: held fewer than they
 * want, whether short of their target or keeping their share), the soonest of theirs
 * (-1: none known). Starts: `granted` of those asked for (the first ones), and when fewer,
 * `waitMs` until the window frees; `waiting` is 0.
 */
export interface LimitAnswer {
  readonly granted: number
  readonly waitMs: number
  readonly waiting: number
}

/**
 * KEYS: the scopes' keys, one per operation. ARGV: this holder (the member's lease token),
 * the prefix of the members' lease keys (a member's lease is that prefix and its name, the
 * token up to its last `#`: same hash tag), then one msgpack array of operations:
 *   'c', key index, concurrency, target, wants
 *       Drops the fields of holders that are gone (their member's lease is gone, or holds
 *       another token: a crashed process's slots come back, even once its member restarted),
 *       then sets this holder's slots to the target when it gives back, or to as many as are
 *       free up to it (never below what it held). A holder left short of what it wants is
 *       marked waiting (field `{w}<holder>`: a name holds no brace), and unmarked once it is
 *       not. Answers held, the soonest PTTL that matters (see LimitAnswer), and how many
 *       other holders wait.
 *   'r', key index, max, per ms, want, grace ms, seq, k, k seqs
 *       Removes the k unused starts given back, and the starts older than the window (by
 *       Redis TIME, in µs: members agree on one clock), adds up to `want` starts
 *       `holder:seq..` scored now + grace, and answers how many, and when short, the ms
 *       until the window frees. With `want` 0 it only gives back (the window is not
 *       touched: the rate may be gone).
 *       WHY scored at the end of the grace: the asker dispatches a start after the script
 *       ran and before its own send time + grace (later it gives it back unused), so the
 *       score is never before the dispatch, and a start granted only once the oldest score
 *       is `per` old is dispatched at least `per` after it, in real time, whatever the
 *       latency of each answer: the window holds in dispatch times, not only in grants.
 * WHY one flat array of integers back: three numbers per operation, nothing to decode.
 */
export const LIMIT_GRANT_LUA = `
local member, leasePrefix = ARGV[1], ARGV[2]
local ops = cmsgpack.unpack(ARGV[3])
local out = {}
local pttls = {}
local now
-- A holder's lease PTTL, or -2 when it is gone: its member's lease is not its token.
local function pttlOf(h)
  local p = pttls[h]
  if p == nil then
    local name = string.match(h, '^(.*)#')
    p = -2
    if name ~= nil then
      local lease = leasePrefix .. name
      if redis.call('GET', lease) == h then p = redis.call('PTTL', lease) end
    end
    pttls[h] = p
  end
  return p
end
local i = 1
while i <= #ops do
  local kind, key = ops[i], KEYS[ops[i + 1]]
  if kind == 'c' then
    local concurrency, target, wants = ops[i + 2], ops[i + 3], ops[i + 4]
    i = i + 5
    if wants < target then wants = target end
    local flat = redis.call('HGETALL', key)
    local others, mine, soonest, waiting, waitSoonest, iWait = 0, 0, -1, 0, -1, false
    local myWait = '{w}' .. member
    for j = 1, #flat, 2 do
      local m, n = flat[j], tonumber(flat[j + 1])
      if m == member then
        mine = n
      elseif m == myWait then
        iWait = true
      else
        local waits = string.sub(m, 1, 3) == '{w}'
        local p = pttlOf(waits and string.sub(m, 4) or m)
        if p == -2 then
          redis.call('HDEL', key, m)
        elseif waits then
          waiting = waiting + 1
          if p >= 0 and (waitSoonest < 0 or p < waitSoonest) then waitSoonest = p end
        else
          others = others + n
          if p >= 0 and (soonest < 0 or p < soonest) then soonest = p end
        end
      end
    end
    local held = target
    if target > mine then
      local room = concurrency - others
      if room < mine then room = mine end
      if held > room then held = room end
    end
    if held ~= mine then
      if held > 0 then redis.call('HSET', key, member, held) else redis.call('HDEL', key, member) end
    end
    if held < wants and not iWait then redis.call('HSET', key, myWait, 1) end
    if held >= wants and iWait then redis.call('HDEL', key, myWait) end
    out[#out + 1] = held
    if held < target then out[#out + 1] = soonest else out[#out + 1] = waitSoonest end
    out[#out + 1] = waiting
  else
    local max, per, want, grace = ops[i + 2], ops[i + 3], ops[i + 4], ops[i + 5]
    local seq, k = ops[i + 6], ops[i + 7]
    for j = 1, k do redis.call('ZREM', key, member .. ':' .. ops[i + 7 + j]) end
    i = i + 8 + k
    if want == 0 then
      out[#out + 1] = 0
      out[#out + 1] = -1
      out[#out + 1] = 0
    else
      if now == nil then
        local t = redis.call('TIME')
        now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
      end
      redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.3f', now - per))
      local count = redis.call('ZCARD', key)
      local granted = max - count
      if granted > want then granted = want end
      if granted < 0 then granted = 0 end
      if granted > 0 then
        local args = {}
        for j = 0, granted - 1 do
          args[#args + 1] = string.format('%.3f', now + grace)
          args[#args + 1] = member .. ':' .. (seq + j)
          if #args >= 1000 then
            redis.call('ZADD', key, unpack(args))
            args = {}
          end
        end
        if #args > 0 then redis.call('ZADD', key, unpack(args)) end
        redis.call('PEXPIRE', key, math.ceil(per + grace))
      end
      out[#out + 1] = granted
      if granted < want then
        local total = count + granted
        local oldest = redis.call('ZRANGE', key, total - max, total - max, 'WITHSCORES')
        local wait = 0
        if oldest[2] ~= nil then wait = tonumber(oldest[2]) + per - now end
        if wait < 0 then wait = 0 end
        wait = math.ceil(wait)
        out[#out + 1] = wait
      else
        out[#out + 1] = -1
      end
      out[#out + 1] = 0
    end
  end
end
return out
`

/** The script's arguments for `ops`: the keys (one per operation) and the packed operations. */
export function encodeLimitOps(base: string, ops: readonly LimitOp[]): { keys: string[]; packed: Buffer } {
  const keys: string[] = []
  const flat: (string | number)[] = []
  for (const op of ops) {
    if (op.kind === 'slots') {
      keys.push(`${base}slots:${op.scope}`)
      flat.push('c', keys.length, op.concurrency, op.target, op.wants)
    } else {
      keys.push(`${base}rate:${op.scope}`)
      flat.push('r', keys.length, op.max, op.perMs, op.want, op.graceMs, op.seq, op.giveBack.length, ...op.giveBack)
    }
  }
  return { keys, packed: pack(flat) }
}

/** The script's flat answer, three numbers per operation, as answers. */
export function decodeLimitAnswers(flat: readonly (number | string)[]): LimitAnswer[] {
  const answers: LimitAnswer[] = []
  for (let i = 0; i + 2 < flat.length; i += 3)
    answers.push({ granted: Number(flat[i]), waitMs: Number(flat[i + 1]), waiting: Number(flat[i + 2]) })
  return answers
}

import type { StoreError } from '../../errors.js'
import { type EncodedPatch, unfinishedOp, writePatch } from './codec.js'
import type { OpWriter } from './op-writer.js'

/*
 * How a RedisStore sends its job writes: every save, update, finish and removal of one
 * turn of the event loop is encoded into one buffer and applied by one call of APPLY_LUA,
 * in the order the writes were made.
 *
 * Why one buffer: ioredis costs about a microsecond per command argument (a job save has
 * some 26), many times what Redis spends on it; one binary argument per batch costs
 * nothing per job, and Redis's cmsgpack turns it into a Lua table in one C call.
 *
 * Why one script call: an EVALSHA per write cost Redis several times what its few
 * commands do. Why Lua rather than MULTI: updates and finishes depend on what is stored
 * (a patch of a missing job must not create a half record), which MULTI cannot express
 * without WATCH. All keys share the node's hash tag, so building job keys inside the
 * script stays in the slot of the declared keys.
 *
 * The buffer is one msgpack array of str values. Binary values (args, feedback) go as str
 * too: cmsgpack does not read msgpack's bin types, and a Lua string holds any bytes.
 * Operations, each an op code and its values:
 *   s id open name args status attempt run dueAt runDueAt defer distributor createdAt
 *     n field value …                      save (replace) a job; open: '1' when unfinished;
 *                                          the optional fields go as n name/value pairs
 *   u id setop n field value …             update an existing job; setop: 'add' | 'rem' | 'fail' | ''
 *                                          ('fail': out of unfinished, into the failed index)
 *   f id run fbbytes remove setop n …      store the run's feedback (field id:run); remove the
 *                                          job ('1') or patch it
 *   r id                                   remove a job
 * The feedback is stored even when its job is gone: it must never be lost.
 */

/** KEYS: unfinished, jobs, outbox, failed index. ARGV: job key prefix, the operations buffer. */
export const APPLY_LUA = `
local prefix = ARGV[1]
local v = cmsgpack.unpack(ARGV[2])
local i, size = 1, #v
local failure
-- What the batch leaves in the two id sets (id -> true: member, false: not), the records it
-- removes (key -> true) and the feedback it stores: gathered, and written by a few commands
-- at the end. The script is atomic, so only each id's last state can ever be seen, and a
-- redis.call costs Redis more than the set or hash operation it makes.
-- failed: ids that became failed (id -> true), added to the failed index. A job that leaves
-- the status by a run (retried, or its end removing it) is left there: the page reader drops
-- it (keys.ts), so that no run pays for the index. dropped: ids removed by 'r' (an operator's
-- purge or cancel, rare), taken out of the index at once, so that a purge leaves no stale ids.
local unfinished, listed, removed, outbox, failed, dropped = {}, {}, {}, {}, {}, {}
local function patch(key, from, n)
  if n > 0 then redis.call('HSET', key, unpack(v, from, from + 2 * n - 1)) end
end
local function membership(setop, id)
  if setop == 'add' then unfinished[id] = true
  elseif setop == 'rem' then unfinished[id] = false
  elseif setop == 'fail' then
    unfinished[id] = false
    failed[id] = true
  end
end
-- A patch applies only to a job that exists: it must not create a half record.
local function update(key, id, setop, from, n)
  if not removed[key] and redis.call('EXISTS', key) == 1 then
    patch(key, from, n)
    membership(setop, id)
  end
end
local function remove(key, id)
  removed[key] = true
  unfinished[id] = false
  listed[id] = false
end
-- Commands over many values go in chunks: Lua's unpack is bounded by its C stack.
local function each(command, key, values)
  for from = 1, #values, 1000 do
    local to = math.min(from + 999, #values)
    if key then redis.call(command, key, unpack(values, from, to))
    else redis.call(command, unpack(values, from, to)) end
  end
end
local function split(states)
  local yes, no = {}, {}
  for id, member in pairs(states) do
    if member then yes[#yes + 1] = id else no[#no + 1] = id end
  end
  return yes, no
end
while i <= size do
  local op, id = v[i], v[i + 1]
  local key = prefix .. id
  if op == 's' then
    redis.call('DEL', key)
    removed[key] = nil
    redis.call('HSET', key, 'id', id,
      'name', v[i + 3], 'args', v[i + 4], 'status', v[i + 5], 'attempt', v[i + 6], 'run', v[i + 7],
      'dueAt', v[i + 8], 'runDueAt', v[i + 9], 'defer', v[i + 10], 'distributor', v[i + 11],
      'createdAt', v[i + 12])
    local n = tonumber(v[i + 13])
    patch(key, i + 14, n)
    listed[id] = true
    unfinished[id] = v[i + 2] == '1'
    if v[i + 5] == 'failed' then failed[id] = true end
    i = i + 14 + 2 * n
  elseif op == 'u' then
    local n = tonumber(v[i + 3])
    update(key, id, v[i + 2], i + 4, n)
    i = i + 4 + 2 * n
  elseif op == 'f' then
    local n = tonumber(v[i + 6])
    outbox[#outbox + 1] = id .. ':' .. v[i + 2]
    outbox[#outbox + 1] = v[i + 3]
    if v[i + 4] == '1' then remove(key, id) else update(key, id, v[i + 5], i + 7, n) end
    i = i + 7 + 2 * n
  elseif op == 'r' then
    remove(key, id)
    dropped[#dropped + 1] = id
    i = i + 2
  else
    -- The operations before it are written whole, as they would have been one by one.
    failure = 'unknown job operation ' .. tostring(op)
    break
  end
end
local gone = {}
for key, yes in pairs(removed) do
  if yes then gone[#gone + 1] = key end
end
each('DEL', false, gone)
each('HSET', KEYS[3], outbox)
local add, rem = split(unfinished)
each('SADD', KEYS[1], add)
each('SREM', KEYS[1], rem)
add, rem = split(listed)
each('SADD', KEYS[2], add)
each('SREM', KEYS[2], rem)
-- Before the ZADD: a job removed and failed again in one batch stays listed.
each('ZREM', KEYS[4], dropped)
local scored = {}
for id in pairs(failed) do
  scored[#scored + 1] = 0
  scored[#scored + 1] = id
end
each('ZADD', KEYS[4], scored)
if failure then return redis.error_reply(failure) end
return 1
`

/** Operations per script call at most: a call blocks Redis while it runs. */
export const MAX_BATCH_OPS = 1_000

/** Job writes of one turn, sent together; `done` settles for all of them at once. */
export interface Batch {
  writer: OpWriter
  /**
   * Updates held back until the batch is sent, by job: a removal of the job later in the
   * same batch makes them moot. The usual case is an instant job, whose attempt starts and
   * ends within one turn: its attempt-start update (and the progress it reported) would
   * cost Redis an EXISTS, HSET and SADD on a record the same script deletes, and the node
   * the encoding of it.
   */
  updates: Map<string, EncodedPatch> | undefined
  done: Promise<void>
  settle(err: StoreError | undefined): void
}

/**
 * What an operation on a job does with an update of it held back in the batch: writes it
 * first (the order of one job's operations is kept), drops it (the job is removed: the
 * update would never be seen), or keeps holding it (another update, merged in).
 */
export const HELD_FIRST = 0
export const HELD_DROPPED = 1
export const HELD_KEPT = 2
export type Held = typeof HELD_FIRST | typeof HELD_DROPPED | typeof HELD_KEPT

/** Writes the update of job `id` held back in `batch`, if any: an operation on it follows. */
export function writeHeldUpdate(batch: Batch, id: string): void {
  const patch = batch.updates?.get(id)
  if (patch === undefined) return
  batch.updates?.delete(id)
  writeUpdate(batch.writer, id, patch)
}

export function writeUpdate(w: OpWriter, id: string, patch: EncodedPatch): void {
  w.value('u').value(id).value(unfinishedOp(patch))
  writePatch(w, patch)
}

/**
 * `later` over `earlier`, field by field. A field `later` gives as undefined is left alone,
 * as one update after the other would (a spread would erase it).
 */
export function mergePatches(earlier: EncodedPatch, later: EncodedPatch): EncodedPatch {
  // Field by field rather than over Object.entries: a job that reports progress merges an
  // update per value it sends, and a loop over dynamic keys made a slow dictionary object.
  const merged = { ...earlier }
  if (later.status !== undefined) merged.status = later.status
  if (later.attempt !== undefined) merged.attempt = later.attempt
  if (later.run !== undefined) merged.run = later.run
  if (later.dueAt !== undefined) merged.dueAt = later.dueAt
  if (later.runDueAt !== undefined) merged.runDueAt = later.runDueAt
  if (later.failedAt !== undefined) merged.failedAt = later.failedAt
  if (later.lastError !== undefined) merged.lastError = later.lastError
  if (later.distributor !== undefined) merged.distributor = later.distributor
  if (later.progress !== undefined) merged.progress = later.progress
  return merged
}

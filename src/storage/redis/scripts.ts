import type { Cluster, Redis } from 'ioredis'
import { APPLY_LUA } from './batch.js'

/*
 * The Lua a RedisStore runs, registered on its client. The write script, APPLY_LUA, is in
 * batch.ts with the writer of the buffer it reads: one format, one file.
 */

/**
 * One page of a listing: KEYS: the id set the ids were read from (it names the node's slot).
 * ARGV: job key prefix, status filter ('' for all), then the ids. Flat field/value arrays.
 * Pages, not one call for the whole set: a call over hundreds of thousands of jobs keeps
 * Redis silent for longer than the store deadline (see RedisStore.list).
 */
const LIST_JOBS_LUA = `
local out = {}
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  if ARGV[2] == '' or redis.call('HGET', key, 'status') == ARGV[2] then
    local fields = redis.call('HGETALL', key)
    if #fields > 0 then out[#out + 1] = fields end
  end
end
return out
`

/**
 * A page of failed jobs. KEYS: the failed index (keys.ts). ARGV: job key prefix, cursor (the
 * last id of the page before, '' for the first), count. Walks the index in id order from the
 * cursor, in steps of count + 1 ids, until count failed jobs and one more are found, or the
 * index ends; an id whose job is gone or no longer failed is dropped from the index on the
 * way. Returns { state, id, rows… }: state 'more' (id: the last job given, the next cursor),
 * '' (the index ended), or 'partial' (1,000 stale ids dropped: id is where to go on), then
 * the jobs as field/value arrays.
 */
const LIST_FAILED_LUA = `
local index, prefix, count = KEYS[1], ARGV[1], tonumber(ARGV[3])
local from = ARGV[2] == '' and '-' or '(' .. ARGV[2]
-- The cursor given comes back when nothing is found before the count is reached (a call
-- for 0 more after a partial one): 'more' then resumes where the caller stood, never at ''.
local out = { '', ARGV[2] }
local found, stale = 0, 0
while true do
  local ids = redis.call('ZRANGEBYLEX', index, from, '+', 'LIMIT', 0, count + 1)
  for _, id in ipairs(ids) do
    local key = prefix .. id
    if redis.call('HGET', key, 'status') == 'failed' then
      if found == count then
        out[1] = 'more'
        return out
      end
      found = found + 1
      out[#out + 1] = redis.call('HGETALL', key)
      out[2] = id
    else
      redis.call('ZREM', index, id)
      stale = stale + 1
    end
  end
  if #ids < count + 1 then return out end
  from = '(' .. ids[#ids]
  if stale >= 1000 then
    out[1] = 'partial'
    out[2] = ids[#ids]
    return out
  end
end
`

/**
 * One step of filling the failed index with the failed jobs stored before it existed. KEYS:
 * the id set of every job, the failed index, its marker. ARGV: job key prefix, SSCAN cursor.
 * Sets the marker when the scan ends; returns the next SSCAN cursor ('0': done).
 */
const INDEX_FAILED_LUA = `
local r = redis.call('SSCAN', KEYS[1], ARGV[2], 'COUNT', 1000)
local add = {}
for _, id in ipairs(r[2]) do
  if redis.call('HGET', ARGV[1] .. id, 'status') == 'failed' then
    add[#add + 1] = 0
    add[#add + 1] = id
  end
end
for from = 1, #add, 1000 do
  redis.call('ZADD', KEYS[2], unpack(add, from, math.min(from + 999, #add)))
end
if r[1] == '0' then redis.call('SET', KEYS[3], '1') end
return r[1]
`

/** Take or renew: the lease goes to ARGV[1] unless another holder has it. */
const ACQUIRE_LEASE_LUA = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
`

const RELEASE_LEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`

type Arg = string | Buffer

/**
 * The commands defineCommand adds; the names are prefixed so as not to clash on a shared client.
 * ioredis adds a `…Buffer` variant of each, whose replies keep binary fields (job args) as bytes.
 */
export interface ScriptCommands {
  jrApply(...keysThenArgs: Arg[]): Promise<number>
  jrListJobsBuffer(...keysThenArgs: Arg[]): Promise<Buffer[][]>
  jrListFailedBuffer(...keysThenArgs: Arg[]): Promise<[Buffer, Buffer, ...Buffer[][]]>
  jrIndexFailed(...keysThenArgs: Arg[]): Promise<string>
  jrAcquireLease(...keysThenArgs: Arg[]): Promise<string>
  jrReleaseLease(...keysThenArgs: Arg[]): Promise<number>
}

/** Registers the scripts on `client` (the store's own or the application's). */
export function defineScripts(client: Redis | Cluster): ScriptCommands {
  client.defineCommand('jrApply', { lua: APPLY_LUA, numberOfKeys: 4 })
  client.defineCommand('jrListJobs', { lua: LIST_JOBS_LUA, numberOfKeys: 1, readOnly: true })
  client.defineCommand('jrListFailed', { lua: LIST_FAILED_LUA, numberOfKeys: 1 })
  client.defineCommand('jrIndexFailed', { lua: INDEX_FAILED_LUA, numberOfKeys: 3 })
  client.defineCommand('jrAcquireLease', { lua: ACQUIRE_LEASE_LUA, numberOfKeys: 1 })
  client.defineCommand('jrReleaseLease', { lua: RELEASE_LEASE_LUA, numberOfKeys: 1 })
  return client as unknown as ScriptCommands
}

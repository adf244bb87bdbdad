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
  jrAcquireLease(...keysThenArgs: Arg[]): Promise<string>
  jrReleaseLease(...keysThenArgs: Arg[]): Promise<number>
}

/** Registers the scripts on `client` (the store's own or the application's). */
export function defineScripts(client: Redis | Cluster): ScriptCommands {
  client.defineCommand('jrApply', { lua: APPLY_LUA, numberOfKeys: 3 })
  client.defineCommand('jrListJobs', { lua: LIST_JOBS_LUA, numberOfKeys: 1, readOnly: true })
  client.defineCommand('jrAcquireLease', { lua: ACQUIRE_LEASE_LUA, numberOfKeys: 1 })
  client.defineCommand('jrReleaseLease', { lua: RELEASE_LEASE_LUA, numberOfKeys: 1 })
  return client as unknown as ScriptCommands
}

/**
 * Redis key layout of one node's state. Every key starts with `<prefix>{<node>}:`, so the
 * node name is the Redis Cluster hash tag and all of a node's keys live in one slot: that is
 * what lets one Lua script touch a job, the id sets and the outbox together.
 *
 *   <prefix>{<node>}:job:<id>     hash, one job record (fields below)
 *   <prefix>{<node>}:jobs         set of every stored job id (admin listing, no KEYS/SCAN)
 *   <prefix>{<node>}:unfinished   set of ids whose status is new, queued, in progress or error
 *   <prefix>{<node>}:failed       sorted set (every score 0, so in id order) of the ids of failed
 *                                 jobs, and of some that no longer are (see below)
 *   <prefix>{<node>}:failed-indexed  string, present once `failed` holds every failed job stored
 *                                 before the index existed
 *   <prefix>{<node>}:outbox       hash feedbackKey(jobId, run) → msgpack tuple of a FeedbackRecord
 *   <prefix>{<node>}:lease        string, the name of the node that owns these jobs (expires)
 *   <prefix>nodes                 set of node names that stored jobs (takeover looks here)
 *
 * Job hash fields carry the JobRecord property names. Numbers are decimal strings (JS
 * shortest round-trip form, so they read back exactly), `defer` is "1" or "0", `args` is the
 * raw msgpack bytes, `retry` and `lastError` are JSON, `progress` (the last value the job
 * reported) is msgpack. An optional property that is absent has no field at all.
 *
 * INVARIANT: an id is in `jobs` exactly when its job hash exists, and in `unfinished`
 * exactly when that hash's status is unfinished. Every write keeps all three in one atomic
 * step. Once `failed-indexed` exists, every id whose hash has status failed is in `failed`:
 * the write that fails a job adds it there; a job that leaves the status (retried, removed)
 * stays, and the reader of a page drops it when it meets it (so no job end pays for it).
 *
 * Braces are refused in the prefix and the node name: Redis takes the hash tag from the
 * first `{` to the next `}`, so a brace there could move keys out of the node's slot or let
 * two nodes' key spaces overlap.
 */

import { InvalidArgumentError } from '../../errors.js'

export const DEFAULT_KEY_PREFIX = 'jr:'

export interface NodeKeys {
  /** `<prefix>{<node>}:job:`; a job's key is this plus its id (Lua scripts build it so). */
  readonly jobPrefix: string
  readonly jobs: string
  readonly unfinished: string
  readonly failed: string
  readonly failedIndexed: string
  readonly outbox: string
  readonly lease: string
  /** The one key outside the node's slot: every node's name. */
  readonly nodes: string
  job(id: string): string
}

export function nodeKeys(node: string, prefix: string = DEFAULT_KEY_PREFIX): NodeKeys {
  if (typeof node !== 'string' || node.length === 0 || /[{}]/.test(node)) {
    throw new InvalidArgumentError(`'node' must be a non-empty string without '{' or '}', got ${JSON.stringify(node)}`)
  }
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    throw new InvalidArgumentError(`'prefix' must be a string without '{' or '}', got ${JSON.stringify(prefix)}`)
  }
  const base = `${prefix}{${node}}:`
  const jobPrefix = `${base}job:`
  return {
    jobPrefix,
    jobs: `${base}jobs`,
    unfinished: `${base}unfinished`,
    failed: `${base}failed`,
    failedIndexed: `${base}failed-indexed`,
    outbox: `${base}outbox`,
    lease: `${base}lease`,
    nodes: `${prefix}nodes`,
    job: (id) => jobPrefix + id,
  }
}

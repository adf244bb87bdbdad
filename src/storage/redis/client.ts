import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis'
import { createRequire } from 'node:module'
import type { RedisTarget } from './url.js'

/** Bounds open() against a host that drops packets instead of refusing the connection. */
const CONNECT_TIMEOUT_MS = 5_000
const RECONNECT_MAX_DELAY_MS = 2_000

/**
 * ioredis, loaded when the first store makes its own client: an application or a node on
 * memory storage does not pay for loading it (a third of this package's import time).
 */
function loadIoredis(): typeof import('ioredis') {
  return createRequire(import.meta.url)('ioredis') as typeof import('ioredis')
}

/**
 * A client for `target`, not yet connected, with the store's connection policy.
 *
 * Before open() succeeds (`isOpen`) the retry strategy says no, so an unreachable server
 * fails open() after one attempt bounded by the connect timeout, instead of
 * ioredis retrying forever in silence. After open it reconnects forever with capped
 * backoff: a node outlives a Redis restart.
 *
 * While disconnected, commands fail at once (enableOfflineQueue: false) and commands in
 * flight when the connection drops fail on that drop (maxRetriesPerRequest: 0), rather
 * than waiting in a client-side queue. Callers answer peers on the strength of a store
 * call (a job is "accepted" only once stored), so a prompt StoreError lets the node refuse
 * or retry on its own terms, and the distributor re-dispatch elsewhere, while a queued
 * write would hold every caller for as long as Redis is away. Every write here is
 * idempotent, so a caller retrying a write that did reach Redis does no harm.
 *
 * No auto-pipelining: job writes are batched per turn by the store itself (batch.ts),
 * and for the few other commands ioredis's pipeline per tick cost more than it saved.
 */
/**
 * Connects a client made by createClient: the one bounded attempt (its retry strategy
 * refuses to retry until the owner is open). A cluster connects to its masters on first
 * use; connecting them here checks that they are reachable and spares the first burst of
 * commands the retries ioredis makes for a node connection still being set up.
 */
export async function connectClient(client: Redis | Cluster): Promise<void> {
  await client.connect()
  if (client.isCluster) await Promise.all((client as Cluster).nodes('master').map((master) => master.ping()))
}

/** How long closing waits for QUIT to be answered before it drops the connection. */
export const QUIT_TIMEOUT_MS = 2_000

/**
 * Ends a client made by createClient: quit() lets replies in flight arrive. A client that is
 * not connected has nothing to wait for (and quit() would be refused without the offline
 * queue); a hung server never answers QUIT, so past the bound the connection is dropped, or
 * the open socket would keep the process that embeds it from exiting.
 */
export async function quitClient(client: Redis | Cluster): Promise<void> {
  if (client.status === 'ready') {
    const timer = setTimeout(() => client.disconnect(), QUIT_TIMEOUT_MS)
    try {
      await client.quit()
      return
    } catch {
      // the connection failed under quit (or was dropped by the bound): drop it
    } finally {
      clearTimeout(timer)
    }
  }
  dropClient(client)
}

/**
 * Drops a client's connection. One that ended already (a refused connect, past its retry
 * strategy) is left alone: ioredis's disconnect() would arm a 2 s timer to destroy a socket
 * that is closed already, and hold the process (`jr` against an unreachable server) that long.
 */
export function dropClient(client: Redis | Cluster): void {
  if (client.status !== 'end') client.disconnect()
}

export function createClient(target: RedisTarget, isOpen: () => boolean): Redis | Cluster {
  const { Cluster, Redis } = loadIoredis()
  const retry = (times: number): number | null => (isOpen() ? Math.min(times * 100, RECONNECT_MAX_DELAY_MS) : null)
  const connection: RedisOptions = {
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
  }
  if (target.username !== undefined) connection.username = target.username
  if (target.password !== undefined) connection.password = target.password
  if (target.tls) connection.tls = {}
  if (target.kind === 'single') {
    return new Redis({
      ...connection,
      host: target.host,
      port: target.port,
      db: target.db,
      lazyConnect: true,
      enableOfflineQueue: false,
      retryStrategy: retry,
    })
  }
  const options: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    // The ready check's CLUSTER INFO is itself refused without the offline queue, and a
    // failed ready check leaves connect() pending forever (ioredis 6.0). open() checks
    // the masters with a PING instead.
    enableReadyCheck: false,
    clusterRetryStrategy: retry,
    redisOptions: connection,
  }
  return new Cluster(target.nodes, options)
}

import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll } from 'vitest'
import { type RedisServer, type RedisServerOptions, startRedisServer } from './redis-server.js'

/** The shared server as the tests see it: where it listens. */
export interface SharedRedis {
  readonly url: string
  readonly port: number
}

/**
 * One redis-server for the tests of a file or describe block: started in beforeAll, stopped
 * in afterAll. Call it where hooks may be registered; read `url` and `port` only in later
 * hooks and in tests. The tests share the server, not its data: each keeps to names of its
 * own (see `unique`).
 */
export function useRedis(options: RedisServerOptions = {}): SharedRedis {
  let server: RedisServer | undefined
  beforeAll(async () => {
    server = await startRedisServer(options)
  })
  afterAll(async () => {
    await server?.stop()
  })
  const started = (): RedisServer => {
    if (server === undefined) throw new Error('the shared redis-server is not started yet: read it in a hook or test')
    return server
  }
  return {
    get url() {
      return started().url
    },
    get port() {
      return started().port
    },
  }
}

/** `base` with a random suffix: a group, node or key name that no other test uses. */
export function unique(base: string): string {
  return `${base}-${randomBytes(4).toString('hex')}`
}

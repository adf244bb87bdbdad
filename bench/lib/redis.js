// The benchmarks start redis-server with the same launcher as the test suite (the bench
// runs under tsx, so it imports the TypeScript helper as it is).
import { command, freePort, startRedisServer as start } from '../../test/helpers/redis-server.js'

export { command, freePort }

/** A throwaway redis-server: free loopback port, temp dir, no persistence. */
export async function startRedisServer() {
  const server = await start()
  return {
    port: server.port,
    url: server.url,
    /** One inline command on a fresh connection; resolves with the raw reply. */
    command: (line) => command(server.port, line),
    stop: () => server.stop(),
    killNow: () => server.killNow(),
  }
}

/** Reads one numeric field of INFO (e.g. 'used_memory'). */
export async function infoField(port, section, field) {
  const reply = await command(port, `INFO ${section}`)
  const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(reply)
  return m === null ? undefined : Number(m[1])
}

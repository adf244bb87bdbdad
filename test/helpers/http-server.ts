import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Resources } from './cluster.js'

/**
 * `handler` on a real HTTP server on a free loopback port, closed with `res`; resolves with
 * its root URL (`http://127.0.0.1:PORT/`). Open connections are dropped at the close, so a
 * client that is kept waiting does not hold it.
 */
export async function serve(res: Resources, handler: RequestListener): Promise<string> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  res.add(server, (s: Server) => {
    s.closeAllConnections()
    return new Promise((resolve) => s.close(resolve))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
}

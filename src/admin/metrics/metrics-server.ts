import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { HttpErrorCode, sendError, type RequestHandler } from '../http.js'

/** The path the node serves its metrics at, as Prometheus scrapes by default. */
export const METRICS_PATH = '/metrics'

/**
 * The node's own HTTP endpoint for its metrics: `GET /metrics` on `host:port`, and a JSON
 * 404 for every other path. No authentication: it listens on the loopback address unless
 * told otherwise (see docs/monitoring.md).
 *
 * States: NEW → LISTENING (start) → CLOSED (close).
 */
export class MetricsServer {
  private readonly server: Server

  constructor(handler: RequestHandler) {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '').split('?', 1)[0]
      if (path === METRICS_PATH) return handler(req, res)
      sendError(
        res,
        404,
        HttpErrorCode.NOT_FOUND,
        `no such path ${JSON.stringify(path)}: metrics are at ${METRICS_PATH}`,
      )
    })
  }

  /** The bound port (the real one when asked for port 0); 0 until listening. */
  get port(): number {
    const address = this.server.address() as AddressInfo | null
    return address === null ? 0 : address.port
  }

  /** Listens on `host:port`; rejects when it cannot (the port is taken, say). */
  start(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const failed = (err: Error): void => reject(err)
      this.server.once('error', failed)
      this.server.listen(port, host, () => {
        this.server.off('error', failed)
        resolve()
      })
    })
  }

  /** Stops listening and ends every connection, idle or not (a scraper keeps its own alive). */
  close(): Promise<void> {
    if (!this.server.listening) return Promise.resolve()
    return new Promise((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }
}

import type { MetricsRegistry } from './prom-client.js'
import { HttpErrorCode, refuseUnlessRead, sendError, type RequestHandler } from '../http.js'

/**
 * A `(req, res)` handler that serves `registry` in its text format (the Prometheus format,
 * or OpenMetrics for a registry of that type), whatever path it is mounted at. GET and HEAD
 * only: any other method is answered 405 with a JSON error.
 */
export function metricsHandler(registry: MetricsRegistry): RequestHandler {
  return (req, res) => {
    if (refuseUnlessRead(req, res, 'metrics')) return
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': registry.contentType, 'Content-Length': Buffer.byteLength(text) })
        res.end(req.method === 'HEAD' ? undefined : text)
      },
      (err: unknown) => {
        if (res.headersSent) return void res.destroy()
        sendError(res, 500, HttpErrorCode.METRICS, `cannot collect the metrics: ${(err as Error)?.message ?? err}`)
      },
    )
  }
}

import type { MetricsRegistry } from './prom-client.js'
import { HttpErrorCode, sendError, type RequestHandler } from '../http.js'

/**
 * A `(req, res)` handler that serves `registry` in its text format (the Prometheus format,
 * or OpenMetrics for a registry of that type), whatever path it is mounted at. GET and HEAD
 * only: any other method is answered 405 with a JSON error.
 */
export function metricsHandler(registry: MetricsRegistry): RequestHandler {
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(
        res,
        405,
        HttpErrorCode.METHOD_NOT_ALLOWED,
        `method ${req.method ?? '(none)'} is not allowed here: metrics are read with GET or HEAD`,
        { Allow: 'GET, HEAD' },
      )
      return
    }
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

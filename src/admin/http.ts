import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'

/**
 * An HTTP surface of job-reactor: a plain node:http handler, which the host application
 * mounts wherever it likes (Express, Fastify and Koa adapters are a few lines: see
 * docs/monitoring.md).
 */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void

/** The `code` of an HTTP error body, `{ error: { code, message } }`. */
export const HttpErrorCode = {
  METHOD_NOT_ALLOWED: 'ERR_METHOD_NOT_ALLOWED',
  NOT_FOUND: 'ERR_NOT_FOUND',
  /** Collecting the metrics failed (a collector of the application's own threw). */
  METRICS: 'ERR_METRICS',
  /** The dashboard's files could not be read (a build that did not copy them beside its module). */
  DASHBOARD: 'ERR_DASHBOARD',
} as const

export type HttpErrorCode = (typeof HttpErrorCode)[keyof typeof HttpErrorCode]

/** Answers with `status` and the JSON error body `{ error: { code, message } }`. */
export function sendError(
  res: ServerResponse,
  status: number,
  code: HttpErrorCode,
  message: string,
  headers: OutgoingHttpHeaders = {},
): void {
  const body = JSON.stringify({ error: { code, message } })
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  })
  res.end(body)
}

/**
 * Answers 405 with `Allow: GET, HEAD` unless `req` reads (GET or HEAD); true when it did.
 * `what` names what is read here, for the message.
 */
export function refuseUnlessRead(req: IncomingMessage, res: ServerResponse, what: string): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return false
  sendError(
    res,
    405,
    HttpErrorCode.METHOD_NOT_ALLOWED,
    `method ${req.method ?? '(none)'} is not allowed here: ${what} are read with GET or HEAD`,
    { Allow: 'GET, HEAD' },
  )
  return true
}

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
  /** A bad parameter, a body that does not parse, an unknown field: the message names it. */
  BAD_REQUEST: 'ERR_BAD_REQUEST',
  /** The admin handler's `authorize` refused the action (acting is refused unless configured). */
  FORBIDDEN: 'ERR_FORBIDDEN',
  /** An action requested from another site (a forged form or script). */
  CROSS_SITE: 'ERR_CROSS_SITE',
  /** The action does not fit the job's state (a retry of a job that did not fail). */
  CONFLICT: 'ERR_CONFLICT',
  /** An action's body is not `application/json`. */
  UNSUPPORTED_MEDIA_TYPE: 'ERR_UNSUPPORTED_MEDIA_TYPE',
  /** A body over the admin API's limit. */
  PAYLOAD_TOO_LARGE: 'ERR_PAYLOAD_TOO_LARGE',
  /** The node to ask is not connected, or went away before it answered. */
  NODE_UNAVAILABLE: 'ERR_NODE_UNAVAILABLE',
  /** The node asked did not answer in time. */
  NODE_TIMEOUT: 'ERR_NODE_TIMEOUT',
  /** The distributor closed: its admin handler answers nothing more. */
  CLOSED: 'ERR_DISTRIBUTOR_CLOSED',
  /** Something failed inside the handler; the message says what. */
  INTERNAL: 'ERR_INTERNAL',
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

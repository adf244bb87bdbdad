import type { IncomingMessage } from 'node:http'
import { HttpErrorCode } from '../http.js'

/** An answer other than 2xx, thrown inside the admin handler and sent as its JSON error body. */
export class HttpProblem {
  constructor(
    readonly status: number,
    readonly code: HttpErrorCode,
    readonly message: string,
    readonly headers: Record<string, string> = {},
  ) {}
}

/** The largest action body read: actions carry a few fields, never data. */
export const MAX_BODY_BYTES = 64 * 1024

/**
 * Refuses an action requested from another site. Browsers say where a request comes from
 * (`Sec-Fetch-Site`, `Origin`); a cross-site form cannot send `application/json` at all
 * without a CORS preflight, which this handler never answers, so the content type is the
 * last line.
 */
export function checkSameSite(req: IncomingMessage): void {
  const site = req.headers['sec-fetch-site']
  if (site === 'cross-site' || site === 'same-site') {
    throw new HttpProblem(
      403,
      HttpErrorCode.CROSS_SITE,
      `actions from another site are refused (sec-fetch-site: ${site})`,
    )
  }
  const origin = req.headers.origin
  if (origin !== undefined && origin !== 'null') {
    let host: string
    try {
      host = new URL(origin).host
    } catch {
      throw new HttpProblem(403, HttpErrorCode.CROSS_SITE, `'origin' header is not a URL: ${origin.slice(0, 100)}`)
    }
    if (host !== req.headers.host) {
      throw new HttpProblem(
        403,
        HttpErrorCode.CROSS_SITE,
        `actions from another site are refused: origin ${host} is not ${req.headers.host ?? 'this host'}`,
      )
    }
  } else if (origin === 'null') {
    throw new HttpProblem(403, HttpErrorCode.CROSS_SITE, `actions from an opaque origin are refused`)
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/json') {
    throw new HttpProblem(
      415,
      HttpErrorCode.UNSUPPORTED_MEDIA_TYPE,
      `an action's body must be 'application/json', got '${(type ?? '').slice(0, 100) || 'none'}'`,
    )
  }
}

/** Reads an action's JSON body: an object of the fields in `allowed` (an empty body is `{}`). */
export async function readJsonBody(req: IncomingMessage, allowed: readonly string[]): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) {
      throw new HttpProblem(413, HttpErrorCode.PAYLOAD_TOO_LARGE, `the body is over ${MAX_BODY_BYTES} bytes`)
    }
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8').trim()
  if (text === '') return {}
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (err) {
    throw new HttpProblem(400, HttpErrorCode.BAD_REQUEST, `the body is not JSON: ${(err as Error).message}`)
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpProblem(400, HttpErrorCode.BAD_REQUEST, `the body must be a JSON object`)
  }
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      const expected = allowed.length === 0 ? 'none' : allowed.map((a) => `'${a}'`).join(', ')
      throw new HttpProblem(
        400,
        HttpErrorCode.BAD_REQUEST,
        `unknown field '${key.slice(0, 64)}' in the body (expected: ${expected})`,
      )
    }
  }
  return body as Record<string, unknown>
}

/** A query parameter that must be an integer in min..max, `fallback` when absent. */
export function intParam(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name)
  if (raw === null) return fallback
  const value = Number(raw)
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new HttpProblem(
      400,
      HttpErrorCode.BAD_REQUEST,
      `'${name}' must be an integer in ${min}..${max}, got '${raw.slice(0, 64)}'`,
    )
  }
  return value
}

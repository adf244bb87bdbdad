import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { AdminClient } from '../../src/admin/admin-client.js'
import { AdminRequestError, AdminUnreachableError, ErrorCode, InvalidArgumentError } from '../../src/errors.js'
import { Resources } from '../helpers/cluster.js'
import { serve } from '../helpers/http-server.js'
import { freePort } from '../helpers/redis-server.js'

const res = new Resources()
afterEach(() => res.releaseAll())

interface Seen {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: string
}

type Answer = (seen: Seen, res: ServerResponse) => void

/** A server that records each request and answers it with `answer`; resolves with its root URL. */
async function server(answer: Answer): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = []
  const url = await serve(res, (req, out) => {
    let body = ''
    req.on('data', (chunk: Buffer) => (body += chunk.toString()))
    req.on('end', () => {
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body }
      seen.push(request)
      answer(request, out)
    })
  })
  return { url, seen }
}

function json(out: ServerResponse, status: number, body: unknown): void {
  out.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' })
  out.end(JSON.stringify(body))
}

const echo: Answer = (seen, out) => json(out, 200, { echoed: seen.url })

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable('the request should have failed'),
    (err: unknown) => err,
  )
}

describe('AdminClient requests', () => {
  it('GETs paths under the mount point, with the bearer token, ids and names as one encoded segment', async () => {
    const { url, seen } = await server(echo)
    // No trailing slash: the client adds it, or 'api/nodes' would replace 'jr'.
    const client = new AdminClient({ url: `${url}jr`, token: 's3cret' })
    expect(client.url).toBe(`${url}jr/`)
    expect(await client.nodes()).toEqual({ echoed: '/jr/api/nodes' })
    await client.job('a/b?c')
    await client.pendingJobs('greet w1', { offset: 50, limit: 10 })
    await client.pending()
    await client.failures(5)
    await client.nodeJobs('w 1', 'periodic', { cursor: '17' })
    await client.overview()
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      'GET /jr/api/nodes',
      'GET /jr/api/jobs/a%2Fb%3Fc',
      'GET /jr/api/pending?route=greet+w1&offset=50&limit=10',
      'GET /jr/api/pending',
      'GET /jr/api/failures?limit=5',
      'GET /jr/api/nodes/w%201/jobs?kind=periodic&cursor=17',
      'GET /jr/api/overview',
    ])
    for (const s of seen) {
      expect(s.headers['authorization']).toBe('Bearer s3cret')
      expect(s.headers['content-type']).toBeUndefined()
      expect(s.body).toBe('')
    }
  })

  it('POSTs JSON bodies with Content-Type application/json, and no token header without a token', async () => {
    const { url, seen } = await server(echo)
    const client = new AdminClient({ url })
    await client.cancel('j1')
    await client.retry('j1')
    await client.retry('j1', 'w2')
    await client.quiet('w1')
    await client.quiet('w1', false)
    await client.pause('greet')
    await client.resume('greet')
    expect(seen.map((s) => [s.method, s.url, s.body])).toEqual([
      ['POST', '/api/jobs/j1/cancel', '{}'],
      ['POST', '/api/jobs/j1/retry', '{}'],
      ['POST', '/api/jobs/j1/retry', '{"node":"w2"}'],
      ['POST', '/api/nodes/w1/quiet', '{"quiet":true}'],
      ['POST', '/api/nodes/w1/quiet', '{"quiet":false}'],
      ['POST', '/api/names/greet/pause', '{}'],
      ['POST', '/api/names/greet/resume', '{}'],
    ])
    for (const s of seen) {
      expect(s.headers['content-type']).toBe('application/json')
      expect(s.headers['authorization']).toBeUndefined()
      // What the handler refuses as cross-site must not come from the client itself.
      expect(s.headers['origin']).toBeUndefined()
      expect(s.headers['sec-fetch-site']).toBeUndefined()
    }
  })
})

describe('AdminClient errors', () => {
  it("turns the API's JSON error into AdminRequestError with the status and the API's code", async () => {
    const { url } = await server((_, out) =>
      json(out, 403, { error: { code: 'ERR_FORBIDDEN', message: "action 'cancel' refused" } }),
    )
    const err = await rejection(new AdminClient({ url }).cancel('j1'))
    expect(err).toBeInstanceOf(AdminRequestError)
    expect(err).toMatchObject({ code: ErrorCode.ADMIN_REQUEST, status: 403, serverCode: 'ERR_FORBIDDEN' })
    expect((err as Error).message).toBe(
      `the admin API answered 403 ERR_FORBIDDEN to POST ${url}api/jobs/j1/cancel: action 'cancel' refused`,
    )
  })

  it('an answer that is not the API JSON (another server, a proxy page) says where the handler should be', async () => {
    const { url } = await server((_, out) => {
      out.writeHead(404, { 'Content-Type': 'text/html' })
      out.end('<h1>Not Found</h1>')
    })
    const err = await rejection(new AdminClient({ url: `${url}wrong/` }).nodes())
    expect(err).toMatchObject({ code: ErrorCode.ADMIN_REQUEST, status: 404, serverCode: undefined })
    expect((err as Error).message).toContain(`text/html rather than the admin API's JSON: is ${url}wrong/ where`)
  })

  it('a 200 that is not JSON is an error too, not an answer', async () => {
    const { url } = await server((_, out) => {
      out.writeHead(200, { 'Content-Type': 'application/json' })
      out.end('{"truncated":')
    })
    const err = await rejection(new AdminClient({ url }).overview())
    expect(err).toMatchObject({ code: ErrorCode.ADMIN_REQUEST, status: 200, serverCode: undefined })
  })

  it('reports a redirect instead of following it (it would drop the token or turn a POST into a GET)', async () => {
    const { url, seen } = await server((_, out) => {
      out.writeHead(308, { Location: '/jr/api/jobs/j1/cancel' })
      out.end()
    })
    const err = await rejection(new AdminClient({ url, token: 't' }).cancel('j1'))
    expect(err).toMatchObject({ code: ErrorCode.ADMIN_REQUEST, status: 308 })
    expect((err as Error).message).toContain(`a redirect to ${url}jr/api/jobs/j1/cancel: use that URL`)
    expect(seen).toHaveLength(1)
  })

  it('a port nothing listens on is AdminUnreachableError naming the address and the reason', async () => {
    const port = await freePort()
    const err = await rejection(new AdminClient({ url: `http://127.0.0.1:${port}/jr/` }).nodes())
    expect(err).toBeInstanceOf(AdminUnreachableError)
    expect(err).toMatchObject({ code: ErrorCode.ADMIN_UNREACHABLE })
    expect((err as Error).message).toBe(
      `cannot reach the admin API at http://127.0.0.1:${port}/jr/: connect ECONNREFUSED 127.0.0.1:${port}`,
    )
  })

  it('a server that never answers is AdminUnreachableError once the timeout passes', async () => {
    const { url, seen } = await server(() => {})
    const err = await rejection(new AdminClient({ url, timeoutMs: 50 }).nodes())
    expect(err).toMatchObject({ code: ErrorCode.ADMIN_UNREACHABLE })
    expect((err as Error).message).toBe(`the admin API at ${url} answered nothing within 50 ms (GET ${url}api/nodes)`)
    expect(seen).toHaveLength(1)
  })

  it('refuses a URL or token it cannot use before any request', () => {
    const bad = (options: ConstructorParameters<typeof AdminClient>[0], message: RegExp): void => {
      expect(() => new AdminClient(options)).toThrow(InvalidArgumentError)
      expect(() => new AdminClient(options)).toThrow(message)
    }
    bad({ url: 'localhost:3000' }, /^admin URL 'localhost:3000' must start with http:\/\/ or https:\/\//)
    bad({ url: 'not a url' }, /admin URL 'not a url' is not a URL/)
    bad({ url: 'ftp://host/' }, /must start with http:\/\/ or https:\/\//)
    // The password must not be echoed in the message.
    bad({ url: 'http://ann:pw@host/jr' }, /^admin URL 'host' must not carry credentials: give a token instead$/)
    bad({ url: 'http://host/', token: 'two words' }, /printable ASCII without spaces/)
    bad({ url: 'http://host/', timeoutMs: 0 }, /'timeoutMs' must be a positive integer/)
  })
})

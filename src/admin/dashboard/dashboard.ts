import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HttpErrorCode, refuseUnlessRead, sendError } from '../http.js'

/**
 * The dashboard's files sit beside this module in `assets/`: in the sources, and in `dist/`
 * where the build copies them (scripts/copy-assets.js), so the package ships them.
 */
const ASSETS = fileURLToPath(new URL('./assets/', import.meta.url))

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
}

/**
 * Scripts and styles come only from the handler itself, never inline: data shown on the
 * page (job args, error messages) cannot become code even if it ever reached the markup.
 * The page connects only to its own API, and no other site may frame it (clickjacking of
 * the action buttons).
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ')

interface Asset {
  body: Buffer
  contentType: string
  etag: string
}

let loading: Promise<Map<string, Asset>> | undefined

/** Every file of `assets/` with what its answer needs. */
async function readAssets(): Promise<Map<string, Asset>> {
  const files = new Map<string, Asset>()
  for (const name of await readdir(ASSETS)) {
    const contentType = CONTENT_TYPES[extname(name)]
    if (contentType === undefined) continue
    const body = await readFile(join(ASSETS, name))
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`
    files.set(name, { body, contentType, etag })
  }
  return files
}

/** The files, read once, on the first request for any of them. */
function assets(): Promise<Map<string, Asset>> {
  if (loading === undefined) {
    loading = readAssets()
    // A failed read is tried again by the next request rather than remembered.
    loading.catch(() => (loading = undefined))
  }
  return loading
}

/**
 * The asset file a dashboard path names, or undefined when the path is not the dashboard's.
 * Leading slashes are not significant: `/assets/app.js` and `assets/app.js` are one file.
 */
function assetName(path: string): string | undefined {
  const relative = path.replace(/^\/+/, '')
  if (relative === '' || relative === 'index.html') return 'index.html'
  return /^assets\/([A-Za-z0-9][A-Za-z0-9._-]*)$/.exec(relative)?.[1]
}

/**
 * Answers a request for the dashboard's pages: GET or HEAD of `/`, `/index.html` and
 * `/assets/<file>`, where `path` is the request's path relative to the admin handler's
 * mount point, without its query. Returns false, having answered nothing, for any other
 * path; true when it answered (a method other than GET or HEAD gets a 405).
 *
 * The files change only with the package, but have no version in their names: the browser
 * keeps them and revalidates each use (`no-cache` with an ETag, answered 304).
 */
export function serveDashboard(req: IncomingMessage, res: ServerResponse, path: string): boolean {
  const name = assetName(path)
  if (name === undefined) return false
  if (refuseUnlessRead(req, res, "the dashboard's pages")) return true
  assets().then(
    (files) => {
      const asset = files.get(name)
      if (asset === undefined) {
        sendError(res, 404, HttpErrorCode.NOT_FOUND, `the dashboard has no file '${name}'`)
        return
      }
      const headers = {
        'Content-Type': asset.contentType,
        'Cache-Control': 'no-cache',
        ETag: asset.etag,
        'X-Content-Type-Options': 'nosniff',
        'Content-Security-Policy': CONTENT_SECURITY_POLICY,
        'Referrer-Policy': 'no-referrer',
        'X-Frame-Options': 'DENY',
      }
      if (req.headers['if-none-match']?.split(/\s*,\s*/).includes(asset.etag)) {
        res.writeHead(304, headers)
        res.end()
        return
      }
      res.writeHead(200, { ...headers, 'Content-Length': asset.body.length })
      res.end(req.method === 'HEAD' ? undefined : asset.body)
    },
    (err: unknown) => {
      sendError(
        res,
        500,
        HttpErrorCode.INTERNAL,
        `cannot read the dashboard's files in ${ASSETS}: ${(err as Error)?.message ?? err}`,
      )
    },
  )
  return true
}

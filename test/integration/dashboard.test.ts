import { mkdirSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { AdminHandlerOptions } from '../../src/admin/api/admin-handler.js'
import type { Distributor } from '../../src/distributor/distributor.js'
import { launchChromium } from '../helpers/browser.js'
import { allAccepted, Resources, spawnConnectedNode, startDistributor, startNode } from '../helpers/cluster.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { within } from '../helpers/within.js'

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))
/** The application mounts the admin handler here, to prove the page's URLs are relative. */
const MOUNT = '/ops/jobs'

const res = new Resources()
afterEach(() => res.releaseAll())

let browser: Browser
beforeAll(async () => {
  browser = await launchChromium()
})
afterAll(() => browser?.close())

/** The distributor's admin handler, mounted under MOUNT in the application's own server. */
async function mount(d: Distributor, options: AdminHandlerOptions = {}): Promise<string> {
  const admin = d.adminHandler(options)
  const server = createServer((req, response) => {
    const url = req.url ?? '/'
    if (url === MOUNT || url.startsWith(`${MOUNT}/`) || url.startsWith(`${MOUNT}?`)) {
      req.url = url.slice(MOUNT.length) || '/'
      return admin(req, response)
    }
    response.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  res.add(server, (s: Server) => {
    // The page's live stream would hold close() open.
    s.closeAllConnections()
    return new Promise((resolve) => s.close(resolve))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${MOUNT}/`
}

interface Dashboard {
  page: Page
  /** Console errors and uncaught exceptions of the page, in order. */
  errors: string[]
}

/** Opens the dashboard at `url` and resolves once its live stream delivered the overview. */
async function open(url: string): Promise<Dashboard> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  res.add(page, (p) => p.close())
  const errors: string[] = []
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text())
  })
  page.on('pageerror', (err) => errors.push(`uncaught: ${err.message}`))
  await page.goto(url)
  await page.locator('#connection[data-state="live"]').waitFor()
  await page.locator('#totals .card').first().waitFor()
  return { page, errors }
}

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true })
}

/** Marks the document, so that a later check tells an update in place from a reload. */
async function markDocument(page: Page): Promise<() => Promise<boolean>> {
  await page.evaluate(() => {
    ;(globalThis as unknown as { jrMark: boolean }).jrMark = true
  })
  return () => page.evaluate(() => (globalThis as unknown as { jrMark?: boolean }).jrMark === true)
}

const allowAll: AdminHandlerOptions = { authorize: () => true }

describe('the dashboard in a real browser', () => {
  it('loads without errors, shows a node that connects, a failed job with its error, and cancels a delayed job', async () => {
    const d = await startDistributor(res)
    const { page, errors } = await open(await mount(d, allowAll))
    expect(errors).toEqual([])
    const unreloaded = await markDocument(page)

    await page.click('nav a[data-page="nodes"]')
    await page.locator('#nodes-empty').waitFor()
    await spawnConnectedNode(res, d, 'n1')
    const row = page.locator('#nodes-table tr[data-node="n1"]')
    await row.waitFor()
    expect(await row.locator('td').nth(1).textContent()).toBe('accepting')
    expect(await unreloaded()).toBe(true)

    const failing = d.enqueue('always_fail', {}, { maxAttempt: 1 })
    await expect(failing.done).rejects.toThrow('boom 1')
    await page.click('nav a[data-page="failures"]')
    const failure = page.locator(`#failures-list li[data-job="${failing.id}"]`)
    await failure.locator('.error-message', { hasText: 'boom 1' }).waitFor()
    await failure.locator('summary').click()
    expect(await failure.locator('pre.stack').textContent()).toContain('Error: boom 1\n    at ')
    await screenshot(page, 'dashboard-failures')

    const delayed = d.enqueue('stamp', { mark: 'delayed' }, { after: 3600 })
    await allAccepted(d, [delayed])
    // The node holds it as scheduled: its page of held jobs, asked of it over the protocol.
    await page.click('nav a[data-page="nodes"]')
    await row.locator('button', { hasText: 'Held jobs' }).click()
    const held = page.locator(`#node-jobs-table tr[data-job="${delayed.id}"]`)
    await held.waitFor()
    expect(await held.locator('td').nth(1).textContent()).toBe('stamp')
    expect(await page.locator('#node-jobs-title').textContent()).toBe('n1: scheduled jobs')
    await page.fill('#find-id', delayed.id)
    await page.click('#find-form button[type="submit"]')
    await page.locator('#job-detail #job-state').waitFor()
    expect(await page.locator('#job-detail pre.args').textContent()).toContain('"mark": "delayed"')
    await page.click('#job-cancel')
    // Cancelling settles the caller's `done` with the job's args.
    expect(await within(delayed.done, 'the cancelled job to settle')).toMatchObject({ mark: 'delayed' })
    await page.locator('#status', { hasText: `Job ${delayed.id} cancelled.` }).waitFor()
    expect(await page.locator('#job-state').textContent()).toBe('cancelled')

    await page.click('nav a[data-page="overview"]')
    await page.locator('#names-table tr[data-name="always_fail"]').waitFor()
    await screenshot(page, 'dashboard-overview')
    expect(await unreloaded()).toBe(true)
    expect(errors).toEqual([])
  })

  it('retries a failure now on the durable node that keeps it: the failure leaves the list, its new run comes in', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1', storage: redis.url })
    const failing = d.enqueue('always_fail', {}, { maxAttempt: 1 })
    await expect(failing.done).rejects.toThrow('boom 1')
    const { page, errors } = await open(await mount(d, allowAll))
    await page.click('nav a[data-page="failures"]')
    const runs = page.locator(`#failures-list li[data-job="${failing.id}"]`)
    await runs.first().waitFor()
    const firstRun = Number(await runs.first().getAttribute('data-run'))

    await runs.first().locator('button.retry').click()
    await page.locator('#status', { hasText: `Job ${failing.id} runs again now on node w1.` }).waitFor()
    // The job fails again (it always does), and its new run is the only one listed.
    const rerun = page.locator(`#failures-list li[data-job="${failing.id}"][data-run="${firstRun + 1}"]`)
    await rerun.locator('.error-message', { hasText: 'boom 1' }).waitFor()
    expect(await runs.count()).toBe(1)
    expect(errors).toEqual([])
  })

  it('a refused action shows why in the banner, and changes nothing', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'n1' })
    // By default the handler lets the page read and refuses every action.
    const { page, errors } = await open(await mount(d))
    await page.click('nav a[data-page="nodes"]')
    const row = page.locator('#nodes-table tr[data-node="n1"]')
    await row.waitFor()

    const answered = page.waitForResponse((r) => r.url().endsWith('/api/nodes/n1/quiet'))
    await row.locator('button.quiet').click()
    const response = await answered
    expect(response.status()).toBe(403)
    const { error } = (await response.json()) as { error: { code: string; message: string } }
    expect(error.code).toBe('ERR_FORBIDDEN')
    const banner = page.getByRole('alert')
    await banner.waitFor()
    expect(await banner.textContent()).toContain(error.message)
    await screenshot(page, 'dashboard-refused')

    expect(await row.locator('td').nth(1).textContent()).toBe('accepting')
    const nodes = (await (await fetch(new URL('api/nodes', page.url()))).json()) as { nodes: { state: string }[] }
    expect(nodes.nodes.map((n) => n.state)).toEqual(['accepting'])
    // Chromium reports the refused request itself on the console; nothing else went wrong.
    expect(errors.filter((e) => !/status of 403/.test(e))).toEqual([])
  })

  it('shows pending jobs a page at a time, and pauses a job name', async () => {
    const d = await startDistributor(res)
    const handles = Array.from({ length: 120 }, (_, i) => d.enqueue('nobody_runs_this', { i }))
    const { page, errors } = await open(await mount(d, allowAll))

    await page.click('nav a[data-page="jobs"]')
    const route = page.locator('#routes-table tbody tr').filter({ hasText: 'nobody_runs_this' })
    await route.waitFor()
    expect(await route.locator('td').nth(4).textContent()).toBe('120')
    await route.locator('button').click()
    const rows = page.locator('#route-jobs-table tbody tr')
    await page.locator('#route-range', { hasText: '(1–50 of 120)' }).waitFor()
    expect(await rows.count()).toBe(50)
    expect(await rows.first().getAttribute('data-job')).toBe(handles[0]!.id)
    await page.click('#route-next')
    await page.locator('#route-range', { hasText: '(51–100 of 120)' }).waitFor()
    await page.click('#route-next')
    await page.locator('#route-range', { hasText: '(101–120 of 120)' }).waitFor()
    expect(await rows.count()).toBe(20)
    expect(await rows.last().getAttribute('data-job')).toBe(handles[119]!.id)
    expect(await page.locator('#route-next').isDisabled()).toBe(true)

    await page.click('nav a[data-page="overview"]')
    const name = page.locator('#names-table tr[data-name="nobody_runs_this"]')
    await name.locator('button', { hasText: 'Pause' }).click()
    await name.locator('td', { hasText: 'paused' }).waitFor()
    expect(d.pausedNames).toEqual(['nobody_runs_this'])
    await name.locator('button', { hasText: 'Resume' }).click()
    await name.locator('td', { hasText: 'running' }).waitFor()
    expect(d.pausedNames).toEqual([])
    expect(errors).toEqual([])
  })
})

describe("the dashboard's files", () => {
  it('are served with their type, revalidation, nosniff and a policy that allows no inline script', async () => {
    const d = await startDistributor(res)
    const base = await mount(d)

    const page = await fetch(base)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(page.headers.get('x-content-type-options')).toBe('nosniff')
    expect(page.headers.get('cache-control')).toBe('no-cache')
    const policy = page.headers.get('content-security-policy') ?? ''
    expect(policy).toContain("default-src 'self'")
    expect(policy).toContain("script-src 'self'")
    expect(policy).not.toContain('unsafe-inline')
    const html = await page.text()
    // Every script is a file; no markup carries inline code or style.
    expect(html.match(/<script\b[^>]*>/g)).toEqual(['<script type="module" src="assets/app.js">'])
    expect(html).not.toMatch(/\son[a-z]+=|\sstyle=/i)
    // Relative, so the page works under any mount point.
    expect(html).not.toMatch(/(?:src|href)="\//)

    const script = await fetch(new URL('assets/app.js', base))
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    const code = await script.text()
    // Data from the API reaches the page as text only.
    expect(code).not.toMatch(/\.(?:inner|outer)HTML\s*=|insertAdjacentHTML\(|document\.write|\[['"](?:inner|outer)HTML/)
    expect(code).not.toMatch(/fetch\('\/|EventSource\('\//)
    expect((await fetch(new URL('assets/style.css', base))).headers.get('content-type')).toBe('text/css; charset=utf-8')

    const etag = script.headers.get('etag')
    expect(etag).toMatch(/^"[\w-]+"$/)
    const again = await fetch(new URL('assets/app.js', base), { headers: { 'If-None-Match': etag! } })
    expect(again.status).toBe(304)
    expect(await again.text()).toBe('')

    const head = await fetch(new URL('index.html', base), { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(Number(head.headers.get('content-length'))).toBe(Buffer.byteLength(html))

    const missing = await fetch(new URL('assets/nothing.js', base))
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('ERR_NOT_FOUND')
    const posted = await fetch(new URL('assets/app.js', base), { method: 'POST' })
    expect(posted.status).toBe(405)
    expect(posted.headers.get('allow')).toBe('GET, HEAD')
  })
})

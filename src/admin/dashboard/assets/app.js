// The job-reactor dashboard: a plain browser module, no framework, no build step.
//
// Every URL is relative: the admin handler is mounted under whatever prefix the application
// chose, and the page is served from that prefix's root.
//
// Everything that comes from the API (job args, error messages, node and job names) is
// untrusted: it reaches the page only as text (textContent, Text nodes, property values),
// never as markup.
//
// The distributor may hold a million jobs and a hundred nodes: the page never asks for an
// unbounded list (the API pages pending and held jobs), and live tables are updated row by
// row, keyed, at most once per event.

const PAGE_SIZE = 50
const MAX_FAILURES = 100
const ARGS_PREVIEW = 160
const TEXT_LIMIT = 100_000
const RETRY_EVENTS_MS = 5000

// ---------------------------------------------------------------------------------------
// DOM helpers

const $ = (id) => document.getElementById(id)

/** An element with properties (never innerHTML) and children (strings become text nodes). */
function h(tag, props, ...children) {
  const el = document.createElement(tag)
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined) continue
      if (key === 'class') el.className = value
      else if (key === 'data') Object.assign(el.dataset, value)
      else if (key === 'onclick') el.addEventListener('click', value)
      else el[key] = value
    }
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) el.append(child)
  return el
}

/** Sets a node's text only when it changed, so a steady value costs no layout. */
function setText(el, text) {
  const value = String(text)
  if (el.textContent !== value) el.textContent = value
}

/** A button styled as a link that opens a job's page; `node` is asked when this distributor no longer holds it. */
function jobLink(id, node) {
  return h(
    'button',
    { type: 'button', class: 'link mono', title: 'Show this job', onclick: () => openJob(id, node) },
    id,
  )
}

/**
 * Keeps a tbody in step with a list of items: a row per key, made once, updated in place,
 * moved only when the order changed, removed when its key is gone.
 */
class KeyedRows {
  constructor(tbody, key, create, update) {
    this.tbody = tbody
    this.key = key
    this.create = create
    this.update = update
    this.rows = new Map()
  }

  set(items) {
    const seen = new Set()
    let cursor = this.tbody.firstChild
    for (const item of items) {
      const key = this.key(item)
      seen.add(key)
      let row = this.rows.get(key)
      if (row === undefined) {
        row = this.create(item, key)
        this.rows.set(key, row)
      }
      row.item = item
      this.update(row, item)
      if (row === cursor) cursor = cursor.nextSibling
      else this.tbody.insertBefore(row, cursor)
    }
    for (const [key, row] of this.rows) {
      if (seen.has(key)) continue
      row.remove()
      this.rows.delete(key)
    }
  }
}

/** A row of `count` empty cells, those at the indexes in `numeric` aligned as numbers. */
function emptyRow(count, data, numeric = []) {
  const row = h('tr', { data })
  for (let i = 0; i < count; i++) row.append(h('td', numeric.includes(i) ? { class: 'num' } : null))
  return row
}

// ---------------------------------------------------------------------------------------
// Formatting

const isNumber = (n) => typeof n === 'number' && Number.isFinite(n)
const count = (n) => (isNumber(n) ? n.toLocaleString('en-US') : '—')

function rate(n) {
  if (!isNumber(n)) return '—'
  return n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US')
}

function duration(seconds) {
  if (!isNumber(seconds)) return '—'
  const s = Math.max(0, seconds)
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`
}

function time(ms) {
  if (!isNumber(ms)) return '—'
  return new Date(ms).toLocaleString()
}

/** A due time relative to now: "in 5 min 2 s" or "3 s ago". */
function due(ms) {
  if (!isNumber(ms)) return '—'
  const seconds = (ms - Date.now()) / 1000
  if (Math.abs(seconds) < 1) return 'now'
  return seconds > 0 ? `in ${duration(seconds)}` : `${duration(-seconds)} ago`
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max)}…` : text
}

function json(value, space) {
  try {
    return JSON.stringify(value, null, space) ?? String(value)
  } catch {
    return String(value)
  }
}

function errorLine(error) {
  if (!error || typeof error !== 'object') return String(error ?? '')
  const head = error.name ? `${error.name}: ` : ''
  const code = error.code ? ` [${error.code}]` : ''
  return `${head}${error.message ?? ''}${code}`
}

// ---------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** A JSON request to the admin API; a non-2xx answer throws its `{ error }` as ApiError. */
async function api(path, body) {
  const init =
    body === undefined
      ? { cache: 'no-store' }
      : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }
  let response
  try {
    response = await fetch(path, init)
  } catch (err) {
    throw new ApiError(0, 'ERR_NETWORK', `cannot reach the server (${err.message})`)
  }
  let data
  try {
    data = await response.json()
  } catch {
    data = undefined
  }
  if (!response.ok) {
    const error = data?.error
    throw new ApiError(
      response.status,
      error?.code ?? `HTTP_${response.status}`,
      error?.message ?? `the server answered ${response.status} ${response.statusText}`,
    )
  }
  return data
}

const segment = encodeURIComponent

// ---------------------------------------------------------------------------------------
// Messages: refusals and failures in the banner (role=alert), outcomes in the status line.

function showError(what, err) {
  const code = err.code ? ` (${err.code})` : ''
  setText($('banner-text'), `${what}: ${err.message}${code}`)
  $('banner').dataset.status = String(err.status ?? '')
  $('banner').hidden = false
}

function showStatus(text) {
  setText($('status'), text)
}

$('banner-close').addEventListener('click', () => {
  $('banner').hidden = true
})

/** Runs an action from `button`, which stays disabled until the answer came. */
async function act(button, what, path, body = {}) {
  button.disabled = true
  try {
    const result = await api(path, body)
    $('banner').hidden = true
    return result
  } catch (err) {
    showError(`${what} refused`, err)
    return undefined
  } finally {
    button.disabled = false
  }
}

// ---------------------------------------------------------------------------------------
// Live state over Server-Sent Events

let overview
let previousOverview
let nodes = []

function setConnection(state, text) {
  const el = $('connection')
  el.dataset.state = state
  setText(el, text)
}

function parse(event) {
  try {
    return JSON.parse(event.data)
  } catch {
    return undefined
  }
}

function connect() {
  const events = new EventSource('api/events')
  events.addEventListener('open', () => {
    setConnection('live', 'live')
    // Failures that happened while the stream was down arrived as no event.
    loadFailures()
  })
  events.addEventListener('error', () => {
    if (events.readyState !== EventSource.CLOSED) return setConnection('reconnecting', 'reconnecting…')
    // The server refused the stream (EventSource does not retry that): say why, try later.
    setConnection('closed', 'disconnected')
    api('api/overview').catch((err) => showError('Live updates stopped', err))
    setTimeout(connect, RETRY_EVENTS_MS)
  })
  events.addEventListener('overview', (event) => {
    const data = parse(event)
    if (data) onOverview(data)
  })
  events.addEventListener('nodes', (event) => {
    const data = parse(event)
    if (data && Array.isArray(data.nodes)) onNodes(data.nodes)
  })
  events.addEventListener('failure', (event) => {
    const data = parse(event)
    if (data) addFailures([data])
  })
}

function onOverview(data) {
  // Rates are the difference between two snapshots, over the distributor's own clock.
  previousOverview = overview
  overview = data
  setText($('member'), [data.group, data.member].filter(Boolean).join(' / '))
  renderTotals()
  renderNames()
  renderNodeAges()
}

// ---------------------------------------------------------------------------------------
// Overview

const finished = (n) => (n.success ?? 0) + (n.failed ?? 0) + (n.cancelled ?? 0)

/** Seconds between the previous snapshot and this one, on the distributor's clock. */
function elapsed() {
  if (!previousOverview || !isNumber(overview.now) || !isNumber(previousOverview.now)) return undefined
  const seconds = (overview.now - previousOverview.now) / 1000
  return seconds > 0 ? seconds : undefined
}

/** Per-second rate of the counter `pick` reads, from `previous` to `current`, or undefined. */
function rateOf(current, previous, pick) {
  const seconds = elapsed()
  if (previous === undefined || seconds === undefined) return undefined
  const delta = pick(current) - pick(previous)
  // A counter that went down belongs to a distributor that restarted: no rate this time.
  return delta >= 0 ? delta / seconds : undefined
}

function namesOf(data) {
  return Array.isArray(data?.names) ? data.names : []
}

function totalRate(pick) {
  const total = (o) => namesOf(o).reduce((sum, n) => sum + (pick(n) ?? 0), 0)
  return rateOf(overview, previousOverview, total)
}

const TOTALS = [
  ['pending', 'Pending', (o) => count(o.pending)],
  ['active', 'Active', (o) => count(o.active)],
  ['inflight', 'In flight', (o) => count(o.inFlight)],
  ['nodes', 'Nodes', (o) => count(o.nodes)],
  ['enqueue-rate', 'Enqueued/s', () => rate(totalRate((n) => n.enqueued))],
  ['finish-rate', 'Finished/s', () => rate(totalRate(finished))],
  ['fail-rate', 'Failed/s', () => rate(totalRate((n) => n.failed))],
  ['failures', 'Failures', (o) => count(o.failures)],
  ['spool', 'Spool', (o) => (o.spoolUp === null || o.spoolUp === undefined ? 'none' : o.spoolUp ? 'up' : 'down')],
]

const totalCells = new Map()

function renderTotals() {
  const container = $('totals')
  for (const [key, label, format] of TOTALS) {
    let value = totalCells.get(key)
    if (value === undefined) {
      value = h('div', { class: 'value' })
      container.append(h('div', { class: 'card', data: { total: key } }, h('div', { class: 'label' }, label), value))
      totalCells.set(key, value)
    }
    setText(value, format(overview))
  }
}

/** The previous snapshot's names by name, for the per-name rates. */
let previousNames = new Map()

const nameRows = new KeyedRows(
  $('names-table').tBodies[0],
  (n) => n.name,
  (n) => {
    const row = emptyRow(12, { name: n.name }, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    const button = h('button', { type: 'button', onclick: () => togglePause(button, row.item) })
    row.append(h('td', null, button))
    row.button = button
    return row
  },
  (row, n) => {
    const previous = previousNames.get(n.name)
    const cells = row.cells
    setText(cells[0], n.name)
    setText(cells[1], count(n.enqueued))
    setText(cells[2], count(n.dispatched))
    setText(cells[3], count(n.success))
    setText(cells[4], count(n.failed))
    setText(cells[5], count(n.cancelled))
    setText(cells[6], count(n.orphans))
    setText(cells[7], count(n.pending))
    setText(cells[8], n.pending > 0 ? duration(n.oldestPendingSeconds) : '—')
    setText(cells[9], rate(rateOf(n, previous, (x) => x.enqueued)))
    setText(cells[10], rate(rateOf(n, previous, finished)))
    setText(cells[11], n.paused ? 'paused' : 'running')
    cells[11].className = n.paused ? 'state paused' : 'state'
    setText(row.button, n.paused ? 'Resume' : 'Pause')
  },
)

function renderNames() {
  const names = namesOf(overview)
  previousNames = new Map(namesOf(previousOverview).map((n) => [n.name, n]))
  nameRows.set(names)
  $('names-empty').hidden = names.length > 0
}

async function togglePause(button, n) {
  const verb = n.paused ? 'resume' : 'pause'
  const result = await act(
    button,
    `${verb === 'pause' ? 'Pause' : 'Resume'} ${n.name}`,
    `api/names/${segment(n.name)}/${verb}`,
  )
  if (!result) return
  showStatus(`${n.name} ${result.paused ? 'paused: its jobs stay pending here' : 'resumed'}.`)
  n.paused = result.paused
  renderNames()
}

// ---------------------------------------------------------------------------------------
// Nodes

const nodeRows = new KeyedRows(
  $('nodes-table').tBodies[0],
  (n) => n.name,
  (n) => {
    const row = emptyRow(9, { node: n.name }, [4, 5, 6])
    const quiet = h('button', { type: 'button', class: 'quiet', onclick: () => toggleQuiet(quiet, row.item) })
    const held = h('button', { type: 'button', onclick: () => showHeld(row.item.name) }, 'Held jobs')
    row.append(h('td', { class: 'actions' }, quiet, ' ', held))
    row.quiet = quiet
    return row
  },
  (row, n) => {
    const cells = row.cells
    setText(cells[0], n.name)
    setText(cells[1], n.state ?? '—')
    cells[1].className = `state ${n.state ?? ''}`
    setText(cells[2], n.address ?? '—')
    setText(cells[3], n.durable ? 'yes' : 'no')
    setText(cells[4], count(n.inFlight))
    setText(cells[5], count(n.concurrency))
    setText(cells[6], count(n.window))
    setText(cells[7], isNumber(n.connectedSince) ? duration((Date.now() - n.connectedSince) / 1000) : '—')
    const jobs = Array.isArray(n.jobs) ? n.jobs.join(', ') : ''
    setText(cells[8], clip(jobs, 80))
    cells[8].title = clip(jobs, 2000)
    setText(row.quiet, n.state === 'quiet' ? 'Unquiet' : 'Quiet')
  },
)

function onNodes(list) {
  nodes = [...list].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  nodeRows.set(nodes)
  $('nodes-empty').hidden = nodes.length > 0
  setText($('nodes-count'), `(${nodes.length})`)
  renderNodeChoice()
}

/** The "connected for" column ages with every overview tick, without touching the rest. */
function renderNodeAges() {
  for (const row of nodeRows.rows.values()) {
    const since = row.item.connectedSince
    if (isNumber(since)) setText(row.cells[7], duration((Date.now() - since) / 1000))
  }
}

async function toggleQuiet(button, n) {
  const quiet = n.state !== 'quiet'
  const result = await act(
    button,
    `${quiet ? 'Quiet' : 'Unquiet'} node ${n.name}`,
    `api/nodes/${segment(n.name)}/quiet`,
    {
      quiet,
    },
  )
  if (result) showStatus(`Node ${n.name} ${result.quiet ? 'takes no new jobs' : 'takes jobs again'}.`)
}

function showHeld(name) {
  location.hash = '#jobs'
  $('node-jobs-node').value = name
  loadHeld({ node: name, kind: $('node-jobs-kind').value, cursors: [null], index: 0 })
}

// ---------------------------------------------------------------------------------------
// Jobs: one by id

/** The job's page has an address: `#jobs/<id>`, or `#jobs/<id>/<node>` for a job a node holds. */
function openJob(id, node) {
  const hash = `#jobs/${segment(id)}${node === undefined ? '' : `/${segment(node)}`}`
  if (location.hash === hash) findJob(id, node)
  else location.hash = hash
}

$('find-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const id = $('find-id').value.trim()
  if (id) openJob(id)
})

let shownJob

async function findJob(id, node) {
  $('find-id').value = id
  const detail = $('job-detail')
  detail.hidden = false
  shownJob = id
  let job
  try {
    job = (await api(`api/jobs/${segment(id)}${node === undefined ? '' : `?node=${segment(node)}`}`)).job
  } catch (err) {
    if (shownJob !== id) return
    if (err.status === 404) detail.replaceChildren(h('p', { class: 'muted', id: 'job-missing' }, err.message))
    else {
      detail.replaceChildren()
      showError(`Job ${id}`, err)
    }
    return
  }
  if (shownJob === id) renderJob(job, node)
}

function field(label, value) {
  return [h('dt', null, label), h('dd', null, value)]
}

function renderJob(job, asked) {
  const cancel = h('button', { type: 'button', id: 'job-cancel', onclick: () => cancelJob(cancel, job.id) }, 'Cancel')
  // The node that keeps a failed job is the one to run it again.
  const body = typeof job.node === 'string' ? { node: job.node } : {}
  const retry = h(
    'button',
    { type: 'button', id: 'job-retry', onclick: () => retryJob(retry, job.id, body, asked) },
    'Retry now',
  )
  const fields = [
    field('Id', h('span', { class: 'mono' }, job.id)),
    field('Name', job.name ?? '—'),
    field('State', h('span', { class: `state ${job.state ?? ''}`, id: 'job-state' }, job.state ?? '—')),
    field('Node', job.node ?? '—'),
    field('Run', count(job.run)),
    field('Due', isNumber(job.dueAt) ? `${time(job.dueAt)} (${due(job.dueAt)})` : '—'),
  ]
  if (job.period !== undefined) fields.push(field('Every', duration(job.period)))
  if (job.status !== undefined) fields.push(field('Status on the node', job.status))
  if (job.attempt !== undefined) fields.push(field('Attempt', count(job.attempt)))
  // The last value the job reported (its node's, kept in the record on Redis storage).
  if (job.progress !== undefined) {
    const progress = isNumber(job.progress) ? String(job.progress) : clip(json(job.progress), ARGS_PREVIEW)
    fields.push(field('Progress', h('span', { class: 'mono', id: 'job-progress' }, progress)))
  }
  if (job.persisted !== undefined) fields.push(field('Persisted', job.persisted ? 'yes' : 'no'))
  if (job.nodeError !== undefined)
    fields.push(field('Node did not answer', h('span', { class: 'error-message' }, job.nodeError)))
  const parts = [h('div', { class: 'row' }, cancel, ' ', retry), h('dl', null, ...fields.flat())]
  parts.push(h('h4', null, 'Args'), h('pre', { class: 'args' }, clip(json(job.args, 2), TEXT_LIMIT)))
  if (job.lastError) parts.push(...errorBlock(job.lastError))
  $('job-detail').replaceChildren(...parts)
}

function errorBlock(error) {
  return [
    h('h4', null, 'Last error'),
    h('p', { class: 'error-message' }, clip(errorLine(error), TEXT_LIMIT)),
    h('pre', { class: 'stack' }, clip(String(error.stack ?? ''), TEXT_LIMIT)),
  ]
}

async function cancelJob(button, id) {
  const result = await act(button, `Cancel job ${id}`, `api/jobs/${segment(id)}/cancel`)
  if (!result) return
  showStatus(result.cancelled ? `Job ${id} cancelled.` : `Job ${id} had finished already: nothing to cancel.`)
  // An ended job is forgotten here: asking again would only answer that it is unknown.
  if (shownJob !== id) return
  setText($('job-state'), result.cancelled ? 'cancelled' : 'finished')
  $('job-cancel').disabled = true
  $('job-retry').disabled = true
}

async function retryJob(button, id, body = {}, asked = undefined) {
  const result = await act(button, `Retry job ${id}`, `api/jobs/${segment(id)}/retry`, body)
  if (!result) return false
  showStatus(`Job ${id} runs again now on node ${result.node}.`)
  if (shownJob === id) findJob(id, asked)
  return true
}

// ---------------------------------------------------------------------------------------
// Jobs: pending by route, paged

const routeRows = new KeyedRows(
  $('routes-table').tBodies[0],
  (r) => r.route,
  (r) => {
    const row = emptyRow(6, { route: r.route }, [4, 5])
    row.append(h('td', null, h('button', { type: 'button', onclick: () => loadRoute(row.item.route, 0) }, 'Show')))
    return row
  },
  (row, r) => {
    const cells = row.cells
    setText(cells[0], r.route)
    setText(cells[1], r.name ?? 'any')
    setText(cells[2], r.node ?? 'any')
    setText(cells[3], r.notNode ?? '—')
    setText(cells[4], count(r.pending))
    setText(cells[5], duration(r.oldestPendingSeconds))
  },
)

async function loadRoutes() {
  try {
    const { routes } = await api('api/pending')
    routeRows.set(routes)
    $('routes-empty').hidden = routes.length > 0
  } catch (err) {
    showError('Pending routes', err)
  }
}

$('routes-refresh').addEventListener('click', loadRoutes)

let routePage

async function loadRoute(route, offset) {
  let page
  try {
    page = await api(`api/pending?route=${segment(route)}&offset=${offset}&limit=${PAGE_SIZE}`)
  } catch (err) {
    return showError(`Pending on ${route}`, err)
  }
  routePage = { route, offset, next: page.next }
  const rows = page.jobs.map((j) =>
    h(
      'tr',
      { data: { job: j.id } },
      h('td', null, jobLink(j.id)),
      h('td', null, j.name),
      h('td', { title: time(j.dueAt) }, due(j.dueAt)),
      h('td', { class: 'num' }, duration(j.pendingSeconds)),
      h('td', { class: 'mono args-preview' }, clip(json(j.args), ARGS_PREVIEW)),
    ),
  )
  $('route-jobs-table').tBodies[0].replaceChildren(...rows)
  setText($('route-name'), route)
  const range = page.jobs.length ? `${offset + 1}–${offset + page.jobs.length}` : 'none'
  setText($('route-range'), `(${range} of ${count(page.total)})`)
  $('route-prev').disabled = offset === 0
  $('route-next').disabled = page.next === null || page.next === undefined
  $('route-jobs').hidden = false
}

$('route-prev').addEventListener('click', () => {
  if (routePage) loadRoute(routePage.route, Math.max(0, routePage.offset - PAGE_SIZE))
})
$('route-next').addEventListener('click', () => {
  if (routePage && isNumber(routePage.next)) loadRoute(routePage.route, routePage.next)
})

// ---------------------------------------------------------------------------------------
// Jobs: held by a node (running, scheduled, periodic, failed), paged by the node's cursor

function renderNodeChoice() {
  const select = $('node-jobs-node')
  const names = nodes.map((n) => n.name)
  const current = [...select.options].map((o) => o.value)
  if (names.length === current.length && names.every((name, i) => name === current[i])) return
  const chosen = select.value
  select.replaceChildren(...names.map((name) => h('option', { value: name }, name)))
  if (names.includes(chosen)) select.value = chosen
}

$('node-jobs-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const node = $('node-jobs-node').value
  if (node) loadHeld({ node, kind: $('node-jobs-kind').value, cursors: [null], index: 0 })
})

let heldPage

/** `cursors[i]` is the cursor of page i (null for the first): Previous walks back along it. */
async function loadHeld(state) {
  const { node, kind, cursors, index } = state
  const cursor = cursors[index]
  const query = `kind=${segment(kind)}&limit=${PAGE_SIZE}${cursor === null ? '' : `&cursor=${segment(cursor)}`}`
  let page
  try {
    page = await api(`api/nodes/${segment(node)}/jobs?${query}`)
  } catch (err) {
    return showError(`${kind} jobs of node ${node}`, err)
  }
  heldPage = { ...state, next: page.next }
  const rows = page.jobs.map((j) =>
    h(
      'tr',
      { data: { job: j.id } },
      h('td', null, jobLink(j.id, node)),
      h('td', null, j.name),
      h('td', null, j.status ?? '—'),
      h('td', { class: 'num' }, count(j.attempt)),
      h('td', { class: 'num' }, count(j.run)),
      h('td', { title: time(j.dueAt) }, due(j.dueAt)),
      h('td', null, j.period === undefined ? '—' : duration(j.period)),
      h('td', { class: 'error-message' }, j.lastError ? clip(errorLine(j.lastError), ARGS_PREVIEW) : ''),
    ),
  )
  $('node-jobs-table').tBodies[0].replaceChildren(...rows)
  setText($('node-jobs-title'), `${node}: ${kind} jobs`)
  const first = index * PAGE_SIZE
  setText($('node-jobs-range'), page.jobs.length ? `(${first + 1}–${first + page.jobs.length})` : '(none)')
  $('node-jobs-prev').disabled = index === 0
  $('node-jobs-next').disabled = page.next === null || page.next === undefined
  $('node-jobs').hidden = false
}

$('node-jobs-prev').addEventListener('click', () => {
  if (heldPage && heldPage.index > 0) loadHeld({ ...heldPage, index: heldPage.index - 1 })
})
$('node-jobs-next').addEventListener('click', () => {
  if (!heldPage || heldPage.next === null || heldPage.next === undefined) return
  const cursors = [...heldPage.cursors.slice(0, heldPage.index + 1), heldPage.next]
  loadHeld({ ...heldPage, cursors, index: heldPage.index + 1 })
})

// ---------------------------------------------------------------------------------------
// Failures: the distributor's recent final failures, then one event per new one

/** Newest first, at most MAX_FAILURES. */
let failures = []

const failureKey = (f) => `${f.id}@${f.at}@${f.run}`

const failureRows = new KeyedRows(
  $('failures-list'),
  failureKey,
  (f) => {
    const retry = h('button', { type: 'button', class: 'retry', onclick: () => retryFailure(retry, f) }, 'Retry now')
    return h(
      'li',
      { class: 'failure', data: { job: f.id, run: String(f.run) } },
      h(
        'div',
        { class: 'failure-head' },
        h('span', { class: 'muted' }, time(f.at)),
        ' ',
        h('strong', null, f.name),
        ' ',
        jobLink(f.id),
        ' ',
        h('span', { class: 'muted' }, `on ${f.node ?? '—'}, run ${count(f.run)}`),
        ' ',
        retry,
      ),
      h('p', { class: 'error-message' }, clip(errorLine(f.error), TEXT_LIMIT)),
      h(
        'details',
        null,
        h('summary', null, 'Stack and args'),
        h('pre', { class: 'stack' }, clip(String(f.error?.stack ?? ''), TEXT_LIMIT)),
        h('pre', { class: 'args' }, clip(json(f.args, 2), TEXT_LIMIT)),
      ),
    )
  },
  () => {},
)

let failuresFrame = 0

/** A burst of failures redraws the list once per frame, not once per failure. */
function renderFailures() {
  if (failuresFrame) return
  failuresFrame = requestAnimationFrame(() => {
    failuresFrame = 0
    failureRows.set(failures)
    $('failures-empty').hidden = failures.length > 0
    setText($('failures-count'), `(${failures.length})`)
  })
}

/**
 * Adds failures to the list, newest first, each once. A reload after a reconnect merges
 * rather than replaces: a failure event may arrive while the reload is on its way.
 */
function addFailures(items) {
  const byKey = new Map(failures.map((f) => [failureKey(f), f]))
  for (const f of items) byKey.set(failureKey(f), f)
  failures = [...byKey.values()].sort((a, b) => (b.at ?? 0) - (a.at ?? 0)).slice(0, MAX_FAILURES)
  renderFailures()
}

/**
 * A retried failure leaves the list, as it leaves the distributor's. Only this one: the new
 * run may have failed already, and its failure arrived first.
 */
async function retryFailure(button, failure) {
  if (!(await retryJob(button, failure.id))) return
  const key = failureKey(failure)
  failures = failures.filter((f) => failureKey(f) !== key)
  renderFailures()
}

async function loadFailures() {
  try {
    addFailures((await api(`api/failures?limit=${MAX_FAILURES}`)).failures)
  } catch (err) {
    showError('Recent failures', err)
  }
}

// ---------------------------------------------------------------------------------------
// Pages: #overview, #nodes, #jobs, #jobs/<id>, #failures

const PAGES = ['overview', 'nodes', 'jobs', 'failures']

function route() {
  const [name, ...rest] = location.hash.slice(1).split('/')
  const page = PAGES.includes(name) ? name : 'overview'
  for (const section of document.querySelectorAll('main > section')) section.hidden = section.dataset.page !== page
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.page === page) link.setAttribute('aria-current', 'page')
    else link.removeAttribute('aria-current')
  }
  if (page !== 'jobs') return
  loadRoutes()
  const [id, node] = rest.map(decodeURIComponent)
  if (id) findJob(id, node)
}

window.addEventListener('hashchange', route)
route()
connect()

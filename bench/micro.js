// `npm run bench:micro`: micro-benchmarks of the hot paths, on the built library.
//   frame codec  encode and decode 1M small frames; the decoder is fed in random splits
//   feedback     decode a frame of 500 results and read each one's args
//   timer heap   push then pop 1M entries (random, equal and rising due times)
//   routing      NodePool.pick over 10 sessions
//   metrics      what a job adds to the counters the metrics read, on each end
// Prints numbers (median of 3 timed rounds after a warm-up), never asserts them.
import { encodeFrame, FrameDecoder } from '../dist/protocol/frame.js'
import { encodeMessageFrame } from '../dist/protocol/encode.js'
import { MessageType } from '../dist/protocol/messages.js'
import { parseMessage } from '../dist/protocol/parse-message.js'
import { pack, unpack } from '../dist/protocol/msgpack.js'
import { decodeArgs } from '../dist/protocol/args.js'
import { TimerHeap } from '../dist/scheduling/timer-heap.js'
import { NodePool } from '../dist/distributor/node-pool.js'
import { JobStats } from '../dist/distributor/job-stats.js'
import { NodeJobStats } from '../dist/node/node-job-stats.js'
import { fmt, median, pad } from './lib/stats.js'
import { seededRandom as prng } from '../test/helpers/prng.js'

const quick = process.argv.includes('--quick')
const FRAMES = quick ? 100_000 : 1_000_000
const HEAP = quick ? 100_000 : 1_000_000
const PICKS = quick ? 200_000 : 2_000_000
const COUNTS = quick ? 1_000_000 : 10_000_000
const ROUNDS = 3

const results = []

/** Runs `fn` once to warm up, then ROUNDS times; `fn` returns { ops, bytes? } and is timed. */
function measure(name, unit, fn) {
  fn()
  const rates = []
  const mbs = []
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint()
    const { ops, bytes } = fn()
    const seconds = Number(process.hrtime.bigint() - start) / 1e9
    rates.push(ops / seconds)
    if (bytes !== undefined) mbs.push(bytes / seconds / 1e6)
  }
  const row = { name, rate: median(rates), unit, mbps: mbs.length > 0 ? median(mbs) : undefined }
  results.push(row)
  process.stderr.write(
    `${pad(name, 44)} ${pad(fmt(row.rate), 12, true)} ${unit}${row.mbps === undefined ? '' : `  ${fmt(row.mbps)} MB/s`}\n`,
  )
}

// --- frame codec -----------------------------------------------------------------------

/** A small job in a dispatch frame, as the distributor sends it. */
function dispatchOf(i) {
  return {
    type: MessageType.DISPATCH,
    seq: i + 1,
    jobs: [
      {
        id: `V1StGXR8_Z5jdHi6B-my${String(i % 1000).padStart(3, '0')}`,
        name: 'noop',
        args: pack({}),
        dueAt: 1_700_000_000_000 + i,
        run: 1,
      },
    ],
  }
}

const messages = Array.from({ length: 1000 }, (_, i) => dispatchOf(i))
const bodies = messages.map((m) => encodeMessageFrame(m, 1 << 30).subarray(4))
const frameBytes = bodies.reduce((n, b) => n + b.length + 4, 0) * (FRAMES / bodies.length)

measure(`encodeFrame, ${FRAMES / 1e6}M prepacked bodies`, 'frames/s', () => {
  let bytes = 0
  for (let i = 0; i < FRAMES; i++) bytes += encodeFrame(bodies[i % bodies.length]).length
  return { ops: FRAMES, bytes }
})

measure(`encodeMessageFrame, ${FRAMES / 1e6}M messages`, 'frames/s', () => {
  let bytes = 0
  for (let i = 0; i < FRAMES; i++) bytes += encodeMessageFrame(messages[i % messages.length], 1 << 30).length
  return { ops: FRAMES, bytes }
})

/** The whole stream once, cut at random points into chunks of 1..maxChunk bytes. */
function splitStream(maxChunk, seed) {
  const stream = Buffer.concat(Array.from({ length: FRAMES }, (_, i) => encodeFrame(bodies[i % bodies.length])))
  const random = prng(seed)
  const chunks = []
  for (let offset = 0; offset < stream.length; ) {
    const n = 1 + Math.floor(random() * maxChunk)
    chunks.push(stream.subarray(offset, offset + n))
    offset += n
  }
  return chunks
}

for (const [label, maxChunk] of [
  ['reads of 1..64 KiB', 65_536],
  ['reads of 1..64 B', 64],
]) {
  const chunks = splitStream(maxChunk, 42)
  measure(`FrameDecoder, ${label}`, 'frames/s', () => {
    let frames = 0
    const decoder = new FrameDecoder({ onFrame: () => frames++ })
    for (const chunk of chunks) decoder.push(chunk)
    if (frames !== FRAMES) throw new Error(`decoded ${frames} frames of ${FRAMES}`)
    return { ops: frames, bytes: frameBytes }
  })
}

{
  const chunks = splitStream(65_536, 7)
  measure('FrameDecoder + unpack + parseMessage, 64 KiB', 'frames/s', () => {
    let frames = 0
    const decoder = new FrameDecoder({
      onFrame: (body) => {
        if (parseMessage(unpack(body)).type === MessageType.DISPATCH) frames++
      },
    })
    for (const chunk of chunks) decoder.push(chunk)
    return { ops: frames, bytes: frameBytes }
  })
}

// --- feedback ---------------------------------------------------------------------------

{
  // What a distributor does with a feedback frame before running closures: decode it,
  // validate it, and get every result's args as an object. 500 results per frame, each
  // { late: n } as the delayed-jobs benchmark's jobs return.
  const ITEMS = 500
  const items = Array.from({ length: ITEMS }, (_, i) => ({
    id: `V1StGXR8_Z5jdHi6B-${String(i).padStart(3, '0')}`,
    run: 1,
    kind: 'success',
    final: true,
    cancelled: false,
    args: pack({ late: i % 100 }),
  }))
  const body = encodeMessageFrame({ type: MessageType.FEEDBACK, seq: 1, items }, 1 << 30).subarray(4)
  const rounds = FRAMES / ITEMS
  measure(`feedback frame: decode, args of each result`, 'results/s', () => {
    let sum = 0
    for (let r = 0; r < rounds; r++) {
      const message = parseMessage(unpack(body))
      for (const item of message.items)
        sum += (item.args instanceof Uint8Array ? decodeArgs(item.args) : item.args).late
    }
    if (sum <= 0) throw new Error('no results read')
    return { ops: rounds * ITEMS, bytes: rounds * body.length }
  })
}

// --- timer heap ------------------------------------------------------------------------

{
  const random = prng(1)
  const now = 1_700_000_000_000
  const dues = Float64Array.from({ length: HEAP }, () => now + Math.floor(random() * 3_600_000))
  // Entries exist before they are scheduled (a job carries its own heap slot): made once,
  // outside the timed sections. A fresh heap does not hold them, whatever their old slot.
  const entries = Array.from({ length: HEAP }, (_, i) => ({ id: i, dueAt: dues[i], timerIndex: -1 }))
  let heap
  measure(`TimerHeap.push, ${HEAP / 1e6}M random due times`, 'ops/s', () => {
    heap = new TimerHeap()
    for (let i = 0; i < HEAP; i++) heap.push(entries[i], dues[i])
    return { ops: HEAP }
  })
  const filled = () => {
    const h = new TimerHeap()
    for (let i = 0; i < HEAP; i++) h.push(entries[i], dues[i])
    return h
  }
  // pop is timed on a heap filled outside the timed section.
  const popRates = []
  for (let r = 0; r <= ROUNDS; r++) {
    const h = filled()
    const start = process.hrtime.bigint()
    let last = -Infinity
    for (let i = 0; i < HEAP; i++) {
      const e = h.pop()
      if (e.dueAt < last) throw new Error('heap order broken')
      last = e.dueAt
    }
    const seconds = Number(process.hrtime.bigint() - start) / 1e9
    if (r > 0) popRates.push(HEAP / seconds)
  }
  const row = { name: `TimerHeap.pop, ${HEAP / 1e6}M entries`, rate: median(popRates), unit: 'ops/s' }
  results.push(row)
  process.stderr.write(`${pad(row.name, 44)} ${pad(fmt(row.rate), 12, true)} ${row.unit}\n`)

  const sameDue = () => {
    const h = new TimerHeap()
    for (let i = 0; i < HEAP; i++) h.push(entries[i], now + 5_000)
    for (let i = 0; i < HEAP; i++) h.pop()
    return { ops: 2 * HEAP }
  }
  measure(`TimerHeap push+pop, ${HEAP / 1e6}M equal due times`, 'ops/s', sameDue)
  // A burst enqueued with one `after`: due times rise with the enqueue time, ~170 per ms.
  const inOrder = () => {
    const h = new TimerHeap()
    for (let i = 0; i < HEAP; i++) h.push(entries[i], now + 5_000 + Math.floor(i / 170))
    for (let i = 0; i < HEAP; i++) h.pop()
    return { ops: 2 * HEAP }
  }
  measure(`TimerHeap push+pop, ${HEAP / 1e6}M due in push order`, 'ops/s', inOrder)
}

// --- routing -------------------------------------------------------------------------

/** A small job's wireSize: every node's frame limit takes it. */
const JOB_BYTES = 128

/** The fields of NodeSession that NodePool reads. */
function fakeSession(name, jobs, window) {
  return {
    name,
    jobs: new Set(jobs),
    window,
    load: 0,
    maxFrameSize: 16 * 1024 * 1024,
    accepting: true,
    get hasRoom() {
      return this.load < this.window
    },
  }
}

{
  const pool = new NodePool()
  const sessions = Array.from({ length: 10 }, (_, i) =>
    fakeSession(`node-${i}`, ['noop', 'stamp', i % 2 === 0 ? 'even' : 'odd'], 200),
  )
  for (const s of sessions) pool.add(s)
  const random = prng(3)
  // Steady state: each pick adds load to the winner, and a job finishes somewhere at random.
  const steady = (name, node, notNode) => () => {
    for (const s of sessions) s.load = 100
    for (let i = 0; i < PICKS; i++) {
      const s = pool.pick(name, node, notNode, false, JOB_BYTES)
      if (s !== undefined) s.load++
      const done = sessions[Math.floor(random() * sessions.length)]
      if (done.load > 0) done.load--
    }
    return { ops: PICKS }
  }
  measure('NodePool.pick, 10 sessions, any node', 'picks/s', steady('noop', undefined, undefined))
  measure('NodePool.pick, 10 sessions, notNode', 'picks/s', steady('noop', undefined, 'node-3'))
  measure('NodePool.pick, 10 sessions, preferred node', 'picks/s', steady('noop', 'node-7', undefined))
  measure('NodePool.pick, 10 sessions, 5 know the job', 'picks/s', steady('odd', undefined, undefined))
  measure('NodePool.pick, 10 sessions all full', 'picks/s', () => {
    for (const s of sessions) s.load = s.window
    for (let i = 0; i < PICKS; i++)
      if (pool.pick('noop', undefined, undefined, false, JOB_BYTES) !== undefined) throw new Error('full pool picked')
    return { ops: PICKS }
  })
}

// --- metrics -------------------------------------------------------------------------

{
  const names = ['noop', 'stamp', 'send_mail', 'resize']
  // The distributor: a result's lookup of its name's stats, and the increments a job makes
  // (enqueued, pending up and down, dispatched, an outcome).
  const jobStats = new JobStats()
  const distributorJob = (pick) => () => {
    for (let i = 0; i < COUNTS; i++) {
      const s = jobStats.of(pick(i))
      s.enqueued++
      s.pending++
      s.pending--
      s.dispatched++
      s.succeeded++
    }
    return { ops: COUNTS }
  }
  measure(
    'distributor counters per job, one name',
    'jobs/s',
    distributorJob(() => 'noop'),
  )
  measure(
    'distributor counters per job, 4 names in turn',
    'jobs/s',
    distributorJob((i) => names[i & 3]),
  )
  // The node: per attempt, its name's stats twice and two observations. The times come from
  // clock reads the node makes anyway (an attempt's end, which starts the next in a burst).
  const nodeStats = new NodeJobStats()
  const nodeAttempt = (pick) => () => {
    for (let i = 0; i < COUNTS; i++) {
      nodeStats.of(pick(i)).wait.observe((i & 7) / 2000)
      nodeStats.of(pick(i)).run.observe((i & 3) / 4000)
    }
    return { ops: COUNTS }
  }
  measure(
    'node counters per attempt, one name',
    'attempts/s',
    nodeAttempt(() => 'noop'),
  )
  measure(
    'node counters per attempt, 4 names in turn',
    'attempts/s',
    nodeAttempt((i) => names[i & 3]),
  )
  // What the counters avoid: a clock read costs more than either end's counters.
  measure('a clock read (Date.now)', 'reads/s', () => {
    let sum = 0
    for (let i = 0; i < COUNTS; i++) sum += Date.now()
    if (sum === 0) throw new Error('no time')
    return { ops: COUNTS }
  })
}

// --- report --------------------------------------------------------------------------

const out = [
  '',
  `job-reactor micro-benchmarks (median of ${ROUNDS} rounds after a warm-up)${quick ? ' (quick)' : ''}`,
  '',
]
for (const r of results)
  out.push(
    `  ${pad(r.name, 44)} ${pad(fmt(r.rate), 12, true)} ${pad(r.unit, 9)}${r.mbps === undefined ? '' : `${pad(fmt(r.mbps), 8, true)} MB/s`}`,
  )
out.push('')
process.stdout.write(`${out.join('\n')}\n`)

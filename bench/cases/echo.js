// Case 1, the ceiling: round trips over one TCP connection to a bare msgpack echo child.
import { createConnection } from 'node:net'
import { createReader, frame } from '../lib/framing.js'
import { hrMs, latencySummary } from '../lib/stats.js'

function connect(port) {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.setNoDelay(true)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}

/** A message shaped like one small job in a dispatch frame. */
function message(i) {
  return { type: 'echo', id: `job-${i}`, name: 'noop', args: {}, dueAt: 0, run: 1 }
}

/** `total` messages, written `batch` frames per write, at most `window` in flight. */
function pipelined(socket, total, { batch = 500, window = 20_000 } = {}) {
  return new Promise((resolve, reject) => {
    let sent = 0
    let received = 0
    const fill = () => {
      while (sent < total && sent - received + batch <= window) {
        const n = Math.min(batch, total - sent)
        const frames = new Array(n)
        for (let k = 0; k < n; k++) frames[k] = frame(message(sent + k))
        sent += n
        socket.write(Buffer.concat(frames))
      }
    }
    const read = createReader(() => {
      received++
    })
    const onData = (chunk) => {
      read(chunk)
      if (received >= total) {
        socket.off('data', onData)
        socket.off('error', reject)
        resolve()
      } else fill()
    }
    socket.on('data', onData)
    socket.once('error', reject)
    fill()
  })
}

/** `count` round trips one at a time; returns each one's duration in ms. */
async function sequential(socket, count) {
  const samples = new Array(count)
  let waiting
  const read = createReader(() => waiting())
  socket.on('data', read)
  for (let i = 0; i < count; i++) {
    const start = process.hrtime.bigint()
    await new Promise((resolve) => {
      waiting = resolve
      socket.write(frame(message(i)))
    })
    samples[i] = hrMs(start)
  }
  socket.off('data', read)
  return samples
}

export async function runEcho(ctx, { messages, roundTrips }) {
  const server = ctx.spawnNode('echo', ['bench/echo-server.js'])
  const line = await server.waitForLine((l) => l.startsWith('listening '))
  const port = Number(line.split(' ')[1])
  const socket = await connect(port)
  ctx.defer(() => socket.destroy())

  // Warm-up: both ends' JIT and the socket buffers.
  await pipelined(socket, Math.min(20_000, messages))
  await sequential(socket, Math.min(500, roundTrips))

  const start = process.hrtime.bigint()
  await pipelined(socket, messages)
  const seconds = hrMs(start) / 1000
  ctx.progress(`echo: ${messages} pipelined round trips in ${seconds.toFixed(2)} s`)
  const lat = latencySummary(await sequential(socket, roundTrips))
  return { throughput: messages / seconds, p50: lat.p50, p99: lat.p99 }
}

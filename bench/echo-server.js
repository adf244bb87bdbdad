// The ceiling: a bare msgpack-over-TCP echo. Every frame is decoded, its message packed again
// and sent back; replies to the frames of one read go out in one write. Prints
// `listening <port>` on stdout once it accepts connections.
import { createServer } from 'node:net'
import { createReader, frame } from './lib/framing.js'

const server = createServer((socket) => {
  socket.setNoDelay(true)
  let out = []
  const read = createReader((message) => out.push(frame(message)))
  socket.on('data', (chunk) => {
    read(chunk)
    if (out.length === 0) return
    socket.write(out.length === 1 ? out[0] : Buffer.concat(out))
    out = []
  })
  socket.on('error', () => socket.destroy())
})

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`)
})

process.on('SIGTERM', () => process.exit(0))

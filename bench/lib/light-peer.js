// A light protocol peer: a node as the distributor sees it (handshake, pings, every dispatch
// frame accepted), without a store, timers or runs. It never sends feedback, so every job it
// is sent stays held by it, as a memory node's running jobs are. A hundred of them cost a
// hundred sockets, where a hundred real nodes in one process would cost a hundred stores,
// schedulers and links.
import { connect } from 'node:net'
import { randomBytes } from 'node:crypto'
import { encodeFrame, FrameDecoder } from '../../dist/protocol/frame.js'
import { NONCE_SIZE } from '../../dist/protocol/handshake.js'
import { MessageType, PROTOCOL_VERSION } from '../../dist/protocol/messages.js'
import { pack, unpack } from '../../dist/protocol/msgpack.js'

/**
 * Connects to the distributor on `port` as node `name`, running `jobs`, holding at most
 * `window` jobs; resolves once welcomed. `close()` drops the connection.
 */
export function connectLightPeer(port, { name, jobs, window }) {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' })
    socket.setNoDelay(true)
    const send = (message) => socket.write(encodeFrame(pack(message)))
    let welcomed = false
    const decoder = new FrameDecoder({
      onFrame: (body) => {
        const message = unpack(body)
        switch (message.type) {
          case MessageType.CHALLENGE:
            send({
              type: MessageType.HELLO,
              protocolVersion: PROTOCOL_VERSION,
              version: '0',
              node: name,
              jobs,
              concurrency: window,
              window,
              durable: false,
              nonce: randomBytes(NONCE_SIZE),
            })
            break
          case MessageType.WELCOME:
            welcomed = true
            resolve({ name, close: () => socket.destroy() })
            break
          case MessageType.PING:
            send({ type: MessageType.PING })
            break
          case MessageType.DISPATCH:
            send({ type: MessageType.ACCEPTED, seq: message.seq })
            break
          case MessageType.ERROR:
            socket.destroy(new Error(`${name}: ${message.code} ${message.message}`))
            break
          default:
          // Nothing else is asked of it here: an admin request to it would time out.
        }
      },
    })
    socket.on('data', (chunk) => decoder.push(chunk))
    socket.on('error', (err) => {
      if (!welcomed) reject(err)
    })
  })
}

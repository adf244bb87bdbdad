import { AuthError, HandshakeError } from '../errors.js'
import { Connection } from '../protocol/connection.js'
import { distributorProof, newNonce, nodeProof, proofMatches } from '../protocol/handshake.js'
import { MessageType, PROTOCOL_VERSION, type HelloMessage } from '../protocol/messages.js'
import type { TrackedJob } from './tracked-job.js'

/**
 * One node as seen by the distributor, over one connection.
 *
 * States: HANDSHAKE (challenge sent, waiting for hello) → READY (welcome sent; jobs may be
 * dispatched) → CLOSED. Only READY sessions are in the pool's routing.
 */
export class NodeSession {
  state: 'handshake' | 'ready' | 'closed' = 'handshake'
  name = ''
  jobs: ReadonlySet<string> = new Set()
  concurrency = 0
  window = 0
  durable = false
  /** The node takes new jobs (false while it drains or its store is down). */
  accepting = true
  /** Jobs counting against `window`: sent, plus accepted instant jobs not yet finished. */
  load = 0
  /** Sent, not yet acknowledged: a drop puts these back in the queue. */
  readonly sent = new Map<string, TrackedJob>()
  /** Accepted by a memory-storage node and not finished: a drop puts these back too. */
  readonly owned = new Map<string, TrackedJob>()
  readonly nonce = newNonce()
  connection!: Connection

  get hasRoom(): boolean {
    return this.state === 'ready' && this.accepting && this.load < this.window && !this.connection.backlogged
  }

  sendChallenge(auth: boolean): void {
    this.connection.send({ type: MessageType.CHALLENGE, protocolVersion: PROTOCOL_VERSION, nonce: this.nonce, auth })
  }

  /**
   * Checks a hello and, when it passes, answers welcome. Throws a HandshakeError or
   * AuthError to be sent back as the error frame.
   */
  acceptHello(hello: HelloMessage, secret: string | undefined, distributorName: string, heartbeatMs: number): void {
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      throw new HandshakeError(`protocol version ${hello.protocolVersion} is not supported (this distributor speaks ${PROTOCOL_VERSION})`)
    }
    if (hello.node.length === 0 || hello.node.length > 200) throw new HandshakeError(`invalid node name`)
    if (hello.concurrency < 1 || hello.window < 1) {
      throw new HandshakeError(`node '${hello.node}' advertised concurrency ${hello.concurrency} and window ${hello.window}; both must be >= 1`)
    }
    let proof: Buffer | undefined
    if (secret !== undefined) {
      if (!proofMatches(nodeProof(secret, this.nonce, hello.nonce, hello.node), hello.proof)) {
        throw new AuthError(`node '${hello.node}' failed authentication: ${hello.proof === undefined ? 'no proof' : 'wrong proof'} of the shared secret`)
      }
      proof = distributorProof(secret, this.nonce, hello.nonce, hello.node)
    }
    this.name = hello.node
    this.jobs = new Set(hello.jobs)
    this.concurrency = hello.concurrency
    this.window = hello.window
    this.durable = hello.durable
    this.state = 'ready'
    this.connection.send({
      type: MessageType.WELCOME,
      distributor: distributorName,
      heartbeatMs,
      ...(proof === undefined ? {} : { proof }),
    })
    this.connection.startHeartbeat(heartbeatMs)
  }
}

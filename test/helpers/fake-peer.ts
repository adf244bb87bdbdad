import { randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { encodeFrame, FrameDecoder } from '../../src/protocol/frame.js'
import { NONCE_SIZE, nodeProof } from '../../src/protocol/handshake.js'
import {
  MessageType,
  PROTOCOL_VERSION,
  type ChallengeMessage,
  type Message,
  type WelcomeMessage,
} from '../../src/protocol/messages.js'
import { parseMessage } from '../../src/protocol/parse-message.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'
import type { Resources } from './cluster.js'
import { toWire } from './wire-form.js'

export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>

export interface FakePeerOptions {
  /** Largest frame this peer accepts from the distributor. @default 16 MiB */
  maxFrameSize?: number
  /**
   * Answer each `ping` with a `ping` (as a live node's own heartbeat would keep the link
   * alive) and keep pings out of the queue, so `next()` sees only the interesting frames.
   * @default true
   */
  answerPings?: boolean
  /** How long `next()`/`nextOfType()` wait before failing the test. @default 5000 */
  waitMs?: number
}

export interface FakeHello {
  node: string
  jobs?: string[]
  concurrency?: number
  window?: number
  durable?: boolean
  protocolVersion?: number
  version?: string
  /** When set, the hello carries an HMAC proof of it. */
  secret?: string
  nonce?: Uint8Array
  maxFrameSize?: number
}

type Waiter = { resolve: (m: Message) => void; reject: (err: Error) => void }

/**
 * A scriptable raw TCP peer for a distributor: it speaks the wire protocol by hand, so a
 * test can send anything (valid, malformed, at the wrong time) and read exactly what comes
 * back, frame by frame.
 *
 * Incoming frames are decoded with the real FrameDecoder, unpacked and validated with
 * parseMessage (so a malformed frame from the distributor fails the test), and queued in
 * arrival order for `next()`. `closed` resolves when the socket closes, for any reason.
 */
export class FakePeer {
  readonly socket: Socket
  /** Resolves when the socket has closed (either side, error or not). */
  readonly closed: Promise<void>
  /** Every message received, pings included, in order. */
  readonly received: Message[] = []
  /** Socket error, if the socket failed (e.g. ECONNRESET). */
  error: Error | undefined
  private readonly queue: Message[] = []
  private readonly waiters: Waiter[] = []
  private readonly decoder: FrameDecoder
  private readonly answerPings: boolean
  private readonly waitMs: number
  private isClosed = false
  /** Why nothing more will arrive: set on close or on a bad frame from the distributor. */
  private failure: Error | undefined

  private constructor(socket: Socket, options: FakePeerOptions) {
    this.socket = socket
    this.answerPings = options.answerPings ?? true
    this.waitMs = options.waitMs ?? 5000
    this.decoder = new FrameDecoder({ onFrame: (body) => this.onFrame(body) }, options.maxFrameSize)
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk)
      } catch (err) {
        this.fail(err as Error)
        socket.destroy()
      }
    })
    socket.on('error', (err) => {
      this.error = err
    })
    this.closed = new Promise<void>((resolve) => {
      socket.once('close', () => {
        this.isClosed = true
        this.fail(new Error(`connection closed${this.error === undefined ? '' : ` (${this.error.message})`}`))
        resolve()
      })
    })
  }

  /** Connects to a distributor (or anything listening) at `port`. */
  static async connect(port: number, host = '127.0.0.1', options: FakePeerOptions = {}): Promise<FakePeer> {
    const socket = connect({ port, host })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => {
        socket.off('error', reject)
        resolve()
      })
      socket.once('error', reject)
    })
    socket.setNoDelay(true)
    return new FakePeer(socket, options)
  }

  /**
   * Wraps a socket a test's own server accepted: the peer then plays the distributor's side
   * (sends the challenge, reads the node's hello) with the same frame-by-frame API.
   */
  static accept(socket: Socket, options: FakePeerOptions = {}): FakePeer {
    socket.setNoDelay(true)
    return new FakePeer(socket, options)
  }

  get isOpen(): boolean {
    return !this.isClosed
  }

  /** The next message received (pings skipped unless `answerPings: false`). */
  next(waitMs = this.waitMs): Promise<Message> {
    const queued = this.queue.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    if (this.failure !== undefined) return Promise.reject(this.failure)
    return new Promise<Message>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (m) => {
          clearTimeout(timer)
          resolve(m)
        },
        reject: (err) => {
          clearTimeout(timer)
          reject(err)
        },
      }
      // A guard against a hung test, not a sleep: it fires only when nothing arrived.
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter)
        if (i >= 0) this.waiters.splice(i, 1)
        reject(
          new Error(
            `no message within ${waitMs} ms (received so far: ${this.received.map((m) => m.type).join(', ') || 'nothing'})`,
          ),
        )
      }, waitMs)
      this.waiters.push(waiter)
    })
  }

  /** The next message of `type`; messages of other types before it are dropped. */
  async nextOfType<T extends MessageType>(type: T, waitMs = this.waitMs): Promise<MessageOf<T>> {
    const deadline = Date.now() + waitMs
    for (;;) {
      const message = await this.next(Math.max(1, deadline - Date.now()))
      if (message.type === type) return message as MessageOf<T>
    }
  }

  /** Sends a well-formed message in its wire form, as a real peer would. */
  send(message: Message): void {
    this.sendMessage(toWire(message))
  }

  /** Packs and frames `message` as it is (anything: it is neither converted nor validated) and writes it. */
  sendMessage(message: unknown): void {
    this.socket.write(encodeFrame(pack(message)))
  }

  /** Writes bytes as they are: half frames, bad lengths, garbage. */
  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes)
  }

  /** A frame around an arbitrary body (which need not be msgpack). */
  sendFrame(body: Uint8Array): void {
    this.socket.write(encodeFrame(body))
  }

  /** The hello a node would answer `challenge` with. */
  hello(challenge: ChallengeMessage, options: FakeHello): MessageOf<typeof MessageType.HELLO> {
    const nonce = options.nonce ?? randomBytes(NONCE_SIZE)
    const hello: MessageOf<typeof MessageType.HELLO> = {
      type: MessageType.HELLO,
      protocolVersion: options.protocolVersion ?? PROTOCOL_VERSION,
      version: options.version ?? '0',
      node: options.node,
      jobs: options.jobs ?? [],
      concurrency: options.concurrency ?? 1,
      window: options.window ?? 1,
      durable: options.durable ?? false,
      nonce,
    }
    if (options.secret !== undefined) hello.proof = nodeProof(options.secret, challenge.nonce, nonce, options.node)
    if (options.maxFrameSize !== undefined) hello.maxFrameSize = options.maxFrameSize
    return hello
  }

  /**
   * Does a node's side of the handshake: waits for the challenge, answers hello, and returns
   * the welcome. Throws when the distributor answers anything else (an error frame included).
   */
  async handshake(options: FakeHello): Promise<{ challenge: ChallengeMessage; welcome: WelcomeMessage }> {
    const challenge = await this.next()
    if (challenge.type !== MessageType.CHALLENGE) throw new Error(`expected a challenge, got '${challenge.type}'`)
    this.sendMessage(this.hello(challenge, options))
    const answer = await this.next()
    if (answer.type !== MessageType.WELCOME) {
      const detail = answer.type === MessageType.ERROR ? `: ${answer.code} ${answer.message}` : ''
      throw new Error(`expected a welcome, got '${answer.type}'${detail}`)
    }
    return { challenge, welcome: answer }
  }

  /** Ends our side cleanly and waits for the close. */
  async end(): Promise<void> {
    this.socket.end()
    await this.closed
  }

  /** Drops the connection at once (no FIN handshake wait) and waits for the close. */
  async destroy(): Promise<void> {
    this.socket.destroy()
    await this.closed
  }

  private onFrame(body: Uint8Array): void {
    let message: Message
    try {
      message = parseMessage(unpack(body))
    } catch (err) {
      this.fail(new Error(`the distributor sent an invalid frame: ${(err as Error).message}`))
      this.socket.destroy()
      return
    }
    this.received.push(message)
    if (message.type === MessageType.PING && this.answerPings) {
      if (!this.socket.destroyed) this.sendMessage({ type: MessageType.PING })
      return
    }
    const waiter = this.waiters.shift()
    if (waiter !== undefined) waiter.resolve(message)
    else this.queue.push(message)
  }

  private fail(err: Error): void {
    this.failure ??= err
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure)
  }
}

/**
 * A TCP server the test scripts by hand, playing the distributor's side of the protocol:
 * `nextPeer` yields each node connection as a FakePeer, in the order they arrive.
 */
export async function fakeDistributor(res: Resources): Promise<{ port: number; nextPeer: () => Promise<FakePeer> }> {
  const server: Server = createServer()
  const arrived: FakePeer[] = []
  const waiting: ((p: FakePeer) => void)[] = []
  server.on('connection', (socket: Socket) => {
    const peer = res.add(FakePeer.accept(socket), (p) => p.destroy())
    const waiter = waiting.shift()
    if (waiter !== undefined) waiter(peer)
    else arrived.push(peer)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  res.add(server, (s) => new Promise<void>((resolve) => s.close(() => resolve())))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    port,
    nextPeer: () => {
      const peer = arrived.shift()
      return peer !== undefined ? Promise.resolve(peer) : new Promise((resolve) => waiting.push(resolve))
    },
  }
}

import { connect as connectTcp, isIP, type Socket } from 'node:net'
import { connect as connectTls } from 'node:tls'
import {
  AuthError,
  ErrorCode,
  HandshakeError,
  HandshakeTimeoutError,
  type JobsError,
  ProtocolError,
} from '../errors.js'
import type { Logger } from '../logger.js'
import { identityKey } from '../protocol/identity.js'
import { Connection } from '../protocol/connection.js'
import { HANDSHAKE_MAX_FRAME_SIZE } from '../protocol/frame.js'
import { distributorProof, newNonce, nodeProof, proofMatches } from '../protocol/handshake.js'
import { MessageType, PROTOCOL_VERSION, type Message } from '../protocol/messages.js'
import type { NodeTlsOptions } from './options.js'

/** What a link needs of its node: a test can fake it in a few lines. */
export interface LinkContext {
  helloFields(): {
    node: string
    version: string
    jobs: string[]
    concurrency: number
    window: number
    durable: boolean
    maxFrameSize: number
  }
  /** Handshake done: the link may carry jobs and feedback. */
  onReady(link: DistributorLink): void
  onMessage(link: DistributorLink, message: Message): void
  onDown(link: DistributorLink, reason: JobsError | undefined): void
}

export interface LinkOptions {
  host: string
  port: number
  /** `host:port`, for logs and to tell links apart. */
  address: string
  secret: string | undefined
  tls: NodeTlsOptions | undefined
  maxFrameSize: number
  stallTimeoutMs: number
  /** From dialling to the distributor's welcome; past it the connection is dropped and redialled. */
  handshakeTimeoutMs: number
  reconnectMinMs: number
  reconnectMaxMs: number
  log: Logger
}

/**
 * The node's side of one distributor: dials, proves itself, and redials forever with capped
 * exponential backoff (with jitter, so a fleet of nodes does not redial in lockstep).
 *
 * States: IDLE → CONNECTING (socket) → HANDSHAKE (challenge/hello/welcome) → READY →
 * (drop) → BACKOFF → CONNECTING …; CLOSED after close(), from any state.
 */
export class DistributorLink {
  state: 'idle' | 'connecting' | 'handshake' | 'ready' | 'backoff' | 'closed' = 'idle'
  /** The distributor's group and member name, from its welcome. */
  group = ''
  memberName = ''
  /** `group/name`: what the node files this distributor's jobs and feedback under. */
  identity = ''
  /** Gone members of its group it answers for (welcome and `answers` messages). */
  answersFor: string[] = []
  /** The distributor's frame limit, from its welcome: nothing bigger may be sent to it. */
  peerMaxFrameSize = Infinity
  private connection: Connection | undefined
  /** Counts connections: which one a frame came on (see sendOn). */
  generation = 0
  private failures = 0
  /** onReady was called and onDown not yet. */
  private up = false
  private timer: NodeJS.Timeout | undefined
  private handshakeTimer: NodeJS.Timeout | undefined
  private nonce = newNonce()
  private serverNonce: Uint8Array | undefined

  constructor(
    private readonly ctx: LinkContext,
    readonly options: LinkOptions,
  ) {}

  /** The `host:port` dialled. */
  get address(): string {
    return this.options.address
  }

  get ready(): boolean {
    return this.state === 'ready'
  }

  start(): void {
    if (this.state !== 'idle') return
    this.dial()
  }

  send(message: Message): boolean {
    return this.state === 'ready' && this.connection !== undefined && this.connection.send(message)
  }

  /**
   * Sends only if the link is still on connection `generation`. Frame numbers restart on
   * every connection, so an answer to a frame of an earlier one (a store write that outlived
   * it) would name a different frame of this one: it is dropped instead. The distributor put
   * that frame's jobs back when the connection dropped; sent again, they are known here.
   */
  sendOn(generation: number, message: Message): boolean {
    return generation === this.generation && this.send(message)
  }

  close(): void {
    this.state = 'closed'
    if (this.timer !== undefined) clearTimeout(this.timer)
    clearTimeout(this.handshakeTimer)
    this.connection?.close()
  }

  private dial(): void {
    this.generation++
    this.state = 'connecting'
    const { host, port, tls } = this.options
    let socket: Socket
    if (tls === undefined) {
      socket = connectTcp({ host, port })
    } else {
      // An IP address is no SNI name (RFC 6066; Node warns, DEP0123). Without a servername
      // the certificate is still checked against the host dialled, IP SANs included.
      const servername = tls.servername ?? (isIP(host) === 0 ? host : undefined)
      socket = connectTls({
        host,
        port,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        ...(servername === undefined ? {} : { servername }),
      })
    }
    const connection = new Connection(
      socket,
      {
        maxFrameSize: this.options.maxFrameSize,
        stallTimeoutMs: this.options.stallTimeoutMs,
        log: this.options.log,
        // Whatever listens at that address proves itself before it may send us much.
        handshake: { maxFrameSize: Math.min(HANDSHAKE_MAX_FRAME_SIZE, this.options.maxFrameSize) },
      },
      {
        onMessage: (message) => this.onMessage(connection, message),
        onClose: (reason) => this.onClose(connection, reason),
      },
    )
    this.connection = connection
    // Bounds the TCP connect (a black-holed address waits minutes for the kernel to give
    // up) and the handshake (a listener that never sends its challenge) alike.
    const timeoutMs = this.options.handshakeTimeoutMs
    this.handshakeTimer = setTimeout(() => {
      if (this.connection !== connection || this.state === 'ready') return
      connection.close(new HandshakeTimeoutError(`no welcome from distributor ${this.address} within ${timeoutMs} ms`))
      socket.destroy()
    }, timeoutMs)
    this.nonce = newNonce()
    this.serverNonce = undefined
    socket.once(tls === undefined ? 'connect' : 'secureConnect', () => {
      if (this.connection === connection && this.state === 'connecting') this.state = 'handshake'
    })
  }

  private onMessage(connection: Connection, message: Message): void {
    if (this.state === 'ready') {
      this.ctx.onMessage(this, message)
      return
    }
    switch (message.type) {
      case MessageType.CHALLENGE: {
        if (message.protocolVersion !== PROTOCOL_VERSION) {
          throw new HandshakeError(
            `distributor speaks protocol ${message.protocolVersion}, this node ${PROTOCOL_VERSION}`,
          )
        }
        const fields = this.ctx.helloFields()
        const { secret } = this.options
        if (message.auth && secret === undefined) {
          this.options.log.error({ distributor: this.address }, 'distributor requires a secret and this node has none')
        }
        this.serverNonce = message.nonce
        connection.send({
          type: MessageType.HELLO,
          protocolVersion: PROTOCOL_VERSION,
          ...fields,
          nonce: this.nonce,
          ...(secret === undefined ? {} : { proof: nodeProof(secret, message.nonce, this.nonce, fields.node) }),
        })
        return
      }
      case MessageType.WELCOME: {
        const { secret } = this.options
        if (this.serverNonce === undefined) throw new ProtocolError(`'welcome' before 'challenge'`)
        if (secret !== undefined) {
          const expected = distributorProof(secret, this.serverNonce, this.nonce, this.ctx.helloFields().node)
          if (!proofMatches(expected, message.proof)) {
            // A distributor that cannot prove the secret may be an impostor collecting jobs' results.
            this.failures = Math.max(this.failures, 8)
            connection.close(new AuthError(`distributor ${this.address} did not prove the shared secret`))
            return
          }
        }
        this.state = 'ready'
        clearTimeout(this.handshakeTimer)
        connection.authenticated()
        this.failures = 0
        this.group = message.group
        this.memberName = message.name
        this.identity = identityKey(message.group, message.name)
        this.answersFor = message.answersFor ?? []
        this.peerMaxFrameSize = message.maxFrameSize ?? Infinity
        connection.startHeartbeat(message.heartbeatMs)
        this.up = true
        this.ctx.onReady(this)
        return
      }
      case MessageType.ERROR: {
        const level = message.code === ErrorCode.AUTH ? 'error' : 'warn'
        this.options.log[level](
          { distributor: this.address, code: message.code },
          `distributor refused the handshake: ${message.message}`,
        )
        // Do not hammer a distributor that refuses us: go straight to long backoff.
        if (message.code === ErrorCode.AUTH || message.code === ErrorCode.HANDSHAKE_REJECTED) {
          this.failures = Math.max(this.failures, 8)
        }
        connection.close()
        return
      }
      default:
        throw new ProtocolError(`unexpected '${message.type}' during the handshake`)
    }
  }

  private onClose(connection: Connection, reason: JobsError | undefined): void {
    if (this.connection !== connection) return
    this.connection = undefined
    clearTimeout(this.handshakeTimer)
    const wasUp = this.up
    if (wasUp) {
      this.up = false
      this.ctx.onDown(this, reason)
    }
    if (this.state === 'closed') return
    this.state = 'backoff'
    const delay = this.backoffDelay()
    this.failures++
    // The first failure in a row is worth a warning (a wrong CA or address would otherwise
    // go unnoticed); the redials after it are not.
    this.options.log[wasUp || this.failures === 1 ? 'warn' : 'debug'](
      { distributor: this.address, reason: reason?.message, retryInMs: delay },
      wasUp ? 'lost the distributor; redialling' : 'cannot reach the distributor; redialling',
    )
    this.timer = setTimeout(() => {
      this.timer = undefined
      if (this.state === 'backoff') this.dial()
    }, delay)
  }

  private backoffDelay(): number {
    const { reconnectMinMs: min, reconnectMaxMs: max } = this.options
    const ceiling = Math.min(max, min * 2 ** Math.min(this.failures, 30))
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
  }
}

import { createServer as createTcpServer, type Server as NetServer, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { HandshakeError, HandshakeTimeoutError, JobsError, ProtocolError } from '../errors.js'
import type { Logger } from '../logger.js'
import { ByteBudget } from '../protocol/byte-budget.js'
import { Connection } from '../protocol/connection.js'
import { HANDSHAKE_MAX_FRAME_SIZE } from '../protocol/frame.js'
import { MessageType, type HelloMessage, type Message } from '../protocol/messages.js'
import type { DistributorEvents } from './events.js'
import type { NodeSession, WelcomeIdentity } from './node-session.js'
import type { ResolvedDistributorOptions } from './options.js'

/** What the server hands the rest of the distributor. */
export interface ServerContext {
  /** A node passed the handshake (its hello was answered with welcome). */
  onReady(session: NodeSession): void
  /** A message from a node past the handshake. */
  onMessage(session: NodeSession, message: Message): void
  /** A connection's writes drained: its node may take jobs again. */
  onDrain(): void
  /** The connection of a node past the handshake closed (`reason`: why, when it failed). */
  onClose(session: NodeSession, reason: JobsError | undefined): void
  /**
   * Who this distributor is, for the welcome; undefined while it does not hold its name yet
   * (a member of a group taking its name's lease): hellos wait until `admit()`.
   */
  identity(): WelcomeIdentity | undefined
}

/**
 * The listening end: a TCP or TLS server, every socket and connection it accepted, and the
 * handshake of each (docs/architecture.md, "Node session"): a challenge goes out at once, and
 * a connection without a valid hello within `handshakeTimeoutMs` is dropped. Until a node
 * has proven itself it may make the distributor hold only `maxHandshakeBytes`, all
 * connections in their handshake together.
 *
 * WHY HELLOS WAIT while the distributor has no identity yet: a node files jobs and results
 * by the identity a welcome gives. A process that only claims a name (a restart waiting out
 * its dead predecessor's lease, or a second replica under a live member's name, which then
 * fails with NameTakenError) must not welcome nodes under it: they would hand it what they
 * owe the live member. A waiting hello holds one small message, under the handshake's
 * byte limits and deadline.
 */
export class Server {
  private server: NetServer | undefined
  private readonly connections = new Set<Connection>()
  /** TLS: the TCP socket under every open connection, those still in the handshake too (no Connection owns them yet). */
  private readonly tcpSockets = new Set<Socket>()
  /** Bytes buffered for connections still in their handshake, all together (see maxHandshakeBytes). */
  private readonly handshakeBytes: ByteBudget
  private closed = false
  private boundPort = 0
  /** Hellos that came before the distributor had its identity, answered by `admit()`. */
  private waiting: { session: NodeSession; hello: HelloMessage }[] = []

  constructor(
    private readonly ctx: ServerContext,
    private readonly options: ResolvedDistributorOptions,
    /** A session for a new connection, its node unknown until the hello. */
    private readonly newSession: () => NodeSession,
    private readonly events: DistributorEvents,
    private readonly log: Logger,
  ) {
    this.handshakeBytes = new ByteBudget(options.maxHandshakeBytes)
  }

  /** The bound port (the real one when listening on port 0); 0 before `start`. */
  get port(): number {
    return this.boundPort
  }

  get started(): boolean {
    return this.server !== undefined
  }

  get listening(): boolean {
    return this.server?.listening === true
  }

  async start(): Promise<void> {
    const onSocket = (socket: Socket): void => this.onSocket(socket)
    let server: NetServer
    if (this.options.tls === undefined) {
      server = createTcpServer(onSocket)
    } else {
      // Node's own TLS handshake timeout is 120 s: a client that never starts TLS would
      // hold a connection slot that long. Ours bounds the TLS handshake too (the wait for
      // the hello starts once TLS is up).
      const tlsServer = createTlsServer(
        { handshakeTimeout: this.options.handshakeTimeoutMs, ...this.options.tls },
        onSocket,
      )
      // A failed TLS handshake (unknown CA, missing client certificate, plaintext client)
      // would otherwise leave no trace here, and Node does not close the socket after a
      // handshake timeout: we do.
      tlsServer.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
        const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`
        // A client certificate that fails verification shows only here (err is a bare hang-up).
        const authorizationError =
          socket.authorizationError === undefined ? undefined : String(socket.authorizationError)
        this.log.warn(
          { peer, code: err.code, err: err.message, authorizationError },
          'TLS handshake with a client failed',
        )
        socket.destroy()
      })
      tlsServer.on('connection', (socket: Socket) => {
        this.tcpSockets.add(socket)
        socket.once('close', () => this.tcpSockets.delete(socket))
      })
      server = tlsServer
    }
    server.maxConnections = this.options.maxConnections
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err) => this.log.error({ err }, 'server error'))
    const address = server.address()
    this.boundPort = typeof address === 'object' && address !== null ? address.port : this.options.port
  }

  /** The distributor has its identity now: the hellos that waited for it are answered. */
  admit(): void {
    for (const { session, hello } of this.waiting.splice(0)) {
      if (session.state === 'handshake') this.answerHello(session, hello)
    }
  }

  /** Closes every connection and the server; resolves once the server closed. */
  async close(): Promise<void> {
    this.closed = true
    this.waiting = []
    const server = this.server
    for (const connection of this.connections) connection.close()
    if (server === undefined) return
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      for (const connection of this.connections) connection.socket.destroy()
      // The server waits for every open socket: one in a TLS handshake would hold close()
      // for as long as handshakeTimeoutMs.
      for (const socket of this.tcpSockets) socket.destroy()
    })
  }

  private onSocket(socket: Socket): void {
    if (this.closed) {
      socket.destroy()
      return
    }
    const session = this.newSession()
    const connection = new Connection(
      socket,
      {
        maxFrameSize: this.options.maxFrameSize,
        stallTimeoutMs: this.options.stallTimeoutMs,
        log: this.log,
        // Until it has proven itself, a stranger may make us hold little (see maxHandshakeBytes).
        handshake: {
          maxFrameSize: Math.min(HANDSHAKE_MAX_FRAME_SIZE, this.options.maxFrameSize),
          budget: this.handshakeBytes,
        },
      },
      {
        onMessage: (message) => this.onMessage(session, message),
        onDrain: () => this.ctx.onDrain(),
        onClose: (reason) => this.onClose(session, reason),
      },
    )
    session.connection = connection
    session.maxFrameSize = this.options.maxFrameSize
    this.connections.add(connection)
    const timer = setTimeout(() => {
      if (session.state !== 'handshake') return
      const waited = this.waiting.findIndex((w) => w.session === session)
      if (waited === -1) {
        this.reject(session, new HandshakeTimeoutError(`no hello within ${this.options.handshakeTimeoutMs} ms`))
        return
      }
      this.waiting.splice(waited, 1)
      this.reject(
        session,
        new HandshakeTimeoutError(
          `no welcome within ${this.options.handshakeTimeoutMs} ms: this distributor is still taking its name in its group`,
        ),
      )
    }, this.options.handshakeTimeoutMs)
    timer.unref()
    socket.once('close', () => clearTimeout(timer))
    session.sendChallenge(this.options.secret !== undefined)
  }

  private onMessage(session: NodeSession, message: Message): void {
    if (session.state !== 'handshake') {
      this.ctx.onMessage(session, message)
      return
    }
    if (message.type !== MessageType.HELLO) {
      this.reject(session, new ProtocolError(`expected 'hello', got '${message.type}'`))
      return
    }
    if (this.waiting.some((w) => w.session === session)) {
      this.reject(session, new ProtocolError(`a second 'hello' before the welcome`))
      return
    }
    if (this.ctx.identity() === undefined) {
      this.waiting.push({ session, hello: message })
      return
    }
    this.answerHello(session, message)
  }

  private answerHello(session: NodeSession, message: HelloMessage): void {
    try {
      session.acceptHello(
        message,
        this.options.secret,
        this.ctx.identity() as WelcomeIdentity,
        this.options.heartbeatMs,
        this.options.maxFrameSize,
      )
    } catch (err) {
      this.reject(session, err instanceof JobsError ? err : new HandshakeError(String(err)))
      return
    }
    this.ctx.onReady(session)
  }

  private onClose(session: NodeSession, reason: JobsError | undefined): void {
    this.connections.delete(session.connection)
    if (session.state !== 'ready') {
      session.state = 'closed'
      return
    }
    this.ctx.onClose(session, reason)
  }

  /** A connection that failed the handshake is dropped, with an error frame that says why. */
  private reject(session: NodeSession, err: JobsError): void {
    this.log.warn({ peer: session.connection.remote, node: session.name || undefined, code: err.code }, err.message)
    this.events.emit('node:rejected', { remote: session.connection.remote, code: err.code, message: err.message })
    session.connection.close(err)
  }
}

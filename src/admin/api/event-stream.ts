import type { ServerResponse } from 'node:http'
import { Timer } from '../../scheduling/timer-heap.js'

/** What the live stream needs: the timers, and the snapshots it sends. */
export interface EventStreamContext {
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  /** The overview as JSON, made once per tick for every client. */
  overview(): string
  /** The nodes as JSON. */
  nodes(): string
}

/** Coalesces a burst of node changes (a hundred nodes connecting) into one `nodes` event. */
const NODES_DELAY_MS = 50

/**
 * The admin API's Server-Sent Events: every client gets `overview` at once and every
 * `intervalMs`, `nodes` at once and after node changes, `failure` as each comes. One timer
 * for all clients, armed only while there are clients: an idle dashboard-less distributor
 * costs nothing. A client that cannot keep up (its socket buffer is full) misses snapshots
 * until it drains: each is complete, so the next one makes up for it.
 */
export class EventStream {
  private readonly clients = new Set<ServerResponse>()
  private readonly tick = new Timer(() => this.onTick())
  private readonly nodesTimer = new Timer(() => this.broadcast('nodes', this.ctx.nodes()))
  private ticking = false
  private nodesQueued = false

  constructor(
    private readonly ctx: EventStreamContext,
    private readonly intervalMs: number,
  ) {}

  get size(): number {
    return this.clients.size
  }

  open(res: ServerResponse): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      // Proxies that buffer responses (nginx) would hold the events back.
      'X-Accel-Buffering': 'no',
    })
    this.clients.add(res)
    res.on('close', () => this.clients.delete(res))
    write(res, 'overview', this.ctx.overview())
    write(res, 'nodes', this.ctx.nodes())
    if (!this.ticking) {
      this.ticking = true
      this.ctx.after(this.tick, this.intervalMs)
    }
  }

  /** Nodes changed: one `nodes` event soon, for this change and those right after it. */
  nodesChanged(): void {
    if (this.clients.size === 0 || this.nodesQueued) return
    this.nodesQueued = true
    this.ctx.after(this.nodesTimer, NODES_DELAY_MS)
  }

  /** Sends `data` (JSON) as event `event` to every client that keeps up. */
  broadcast(event: string, data: string): void {
    if (event === 'nodes') this.nodesQueued = false
    for (const res of this.clients) if (!res.writableNeedDrain) write(res, event, data)
  }

  close(): void {
    this.ctx.cancelTimer(this.tick)
    this.ctx.cancelTimer(this.nodesTimer)
    for (const res of this.clients) res.end()
    this.clients.clear()
  }

  private onTick(): void {
    if (this.clients.size === 0) {
      this.ticking = false
      return
    }
    this.broadcast('overview', this.ctx.overview())
    this.ctx.after(this.tick, this.intervalMs)
  }
}

function write(res: ServerResponse, event: string, data: string): void {
  res.write(`event: ${event}\ndata: ${data}\n\n`)
}

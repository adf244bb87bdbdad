import type { Logger } from '../../logger.js'
import { Timer } from '../../scheduling/timer-heap.js'
import { limitScope } from '../../storage/redis/group-keys.js'
import type { LimitAnswer, LimitOp, StartsOp } from '../../storage/redis/limit-scripts.js'
import type { RateOptions } from '../limit-options.js'
import type { NameLimit, SharedLimits } from '../limits.js'
import { scarce, slotsDecision, slotsTarget, slotsWanted, startGraceMs, startsWanted } from './group-limit-decisions.js'

/** What the group's limits need of their distributor. */
export interface GroupLimitsContext {
  readonly log: Logger
  /** Fires `timer` once, `ms` from now, on the distributor's scheduler. */
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
}

/** What they need of Redis (GroupStore). */
export interface LimitGrants {
  /** `holder`: this process's lease token (see limit-scripts.ts). */
  grantLimits(holder: string, ops: readonly LimitOp[]): Promise<LimitAnswer[]>
  publishSlots(member: string, scopes: readonly string[]): Promise<void>
  subscribeSlots(member: string, onScope: (scope: string) => void): Promise<void>
}

/** One scope of a limit (its name in total, or one key) as this member holds it. */
interface Scope {
  limit: NameLimit
  readonly key: string
  /** In Redis (group-keys.ts limitScope). */
  readonly id: string
  /** Slots held, as far as known here: lowered at once when some are given back. */
  slots: number
  /** Asked for more and got fewer: asked again once a member gives some back or a holder's lease may have run out. */
  refused: boolean
  /** Give-backs heard of: a refusal answered after one was heard is asked again at once. */
  notices: number
  /** Left short of what its jobs could use by the last answer: the group knows this member waits (told when it changes). */
  waiting: boolean
  /**
   * A job of the scope ended here while fewer slots than members want them: the slot it
   * freed is not reused but goes back in the turn's call (the others' turn).
   */
  turnOver: boolean
  /** Other members waiting for slots of the scope, as of the last answer: this one keeps only its share. */
  contenders: number
  /** A message of the scope was heard while holding slots: ask (with the target of then) to learn who waits. */
  refresh: boolean
  /** Starts granted and not used yet (their seqs), usable until `startsUntil` (epoch ms). */
  starts: number[]
  startsUntil: number
  /** A job waits for a start: asked for in the turn's call. */
  wantsStarts: boolean
  /** The window was full: asked again when it frees (the timer). */
  rateRefused: boolean
  readonly rateTimer: Timer
  /** The limit was removed or replaced: everything goes back. */
  detached: boolean
  dirty: boolean
}

/** What a call asked of one scope, to read its answer by. */
interface Sent {
  readonly scope: Scope
  readonly op: LimitOp
  /** Slots: held before (a give-back is told to the group). Starts: unused. */
  readonly before: number
  readonly notices: number
  /** When the call was made (epoch ms): granted starts are usable until then + their grace. */
  readonly at: number
}

const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 5_000

/**
 * A limit across a distributor group (docs/architecture.md, Limits, "Across a group"): the
 * slots of each concurrency scope are a semaphore in Redis, the starts of each rate scope a
 * sliding window there (limit-scripts.ts). This member holds slots and starts granted by
 * the group, and the dispatch pass uses only those (synchronously: NameLimit asks
 * `slots`/`starts`); what is missing, or held and no longer needed, goes into one script
 * call per event-loop turn for every scope that changed, one call at a time.
 *
 * - A slot is kept while jobs of its scope wait here (no round trip per job under load),
 *   and given back when none waits; a give-back is published on the group's channel.
 * - A member refused asks again when it hears a give-back of that scope, or once the
 *   soonest lease of another holder could have run out (its slots come back then: the
 *   script drops the fields of holders whose member's lease is gone or holds another
 *   process's token): one timer on the
 *   distributor's scheduler. A rate refused asks again when its window frees (the script
 *   says when). No polling.
 * - A call that fails (Redis down, or silent past storeTimeoutMs) is made again with capped
 *   backoff, with the targets of that moment (each operation sets a value: a retry of one
 *   that landed does no harm). Meanwhile the member keeps what it holds: jobs that hold
 *   granted slots go on, nothing beyond them starts.
 */
export class GroupLimits implements SharedLimits {
  /** Scopes of names limited in total, by name; of names limited per key, by name and key. */
  private readonly totals = new Map<string, Scope>()
  private readonly keyed = new Map<string, Map<string, Scope>>()
  private readonly byId = new Map<string, Scope>()
  private readonly dirty = new Set<Scope>()
  private flushQueued = false
  private inFlight = false
  private named = false
  private closed = false
  private subscribed: Promise<void> | undefined
  private failures = 0
  private seq = 0
  /** The call on its way, and what it asked: close gives back what it may grant. */
  private sending: { readonly sent: readonly Sent[]; readonly done: Promise<unknown> } | undefined
  private readonly retryTimer = new Timer(() => {
    this.inFlight = false
    this.flush()
  })
  /** Due when the soonest lease of a member holding slots that this one was refused could run out. */
  private readonly leaseTimer = new Timer(() => this.leaseRanOut())
  private leaseTimerAt = Number.POSITIVE_INFINITY

  constructor(
    private readonly ctx: GroupLimitsContext,
    private readonly store: LimitGrants,
    /** This member: its name on the group's channel. */
    private readonly member: string,
    /**
     * This process's lease token: its slots and starts are held under it, and dropped once the
     * member's lease is gone or holds another token (a restart's).
     */
    private readonly holder: string,
  ) {}

  /** This process holds the member's name (and its lease): calls may go out. */
  start(): void {
    this.named = true
    this.queueFlush()
  }

  slots(limit: NameLimit, key: string): number {
    const scope = this.find(limit, key)
    if (scope === undefined) return 0
    // While others wait, a slot beyond the share is not reused: it goes back when its job ends.
    if (scope.contenders === 0) return scope.slots
    if (scope.turnOver) return Math.min(scope.slots, limit.inUse(key))
    return Math.min(scope.slots, Math.ceil((limit.limit.concurrency ?? 0) / (scope.contenders + 1)))
  }

  starts(limit: NameLimit, key: string, now: number): number {
    const scope = this.find(limit, key)
    return scope === undefined || now > scope.startsUntil ? 0 : scope.starts.length
  }

  started(limit: NameLimit, key: string): void {
    this.find(limit, key)?.starts.pop()
  }

  changed(limit: NameLimit, key: string, ended = false): void {
    const scope = this.scopeOf(limit, key)
    if (ended && scarce(limit.limit.concurrency, scope.contenders)) scope.turnOver = true
    this.markDirty(scope)
  }

  relimited(limit: NameLimit): void {
    for (const scope of this.byId.values()) {
      if (scope.limit !== limit) continue
      // Raised: the room may be there now; lowered or removed: what is held beyond it goes back.
      scope.refused = false
      scope.rateRefused = false
      this.markDirty(scope)
    }
  }

  wantStarts(limit: NameLimit, key: string): void {
    const scope = this.scopeOf(limit, key)
    scope.wantsStarts = true
    this.markDirty(scope)
  }

  detach(limit: NameLimit): void {
    for (const scope of this.byId.values()) {
      if (scope.limit !== limit) continue
      scope.detached = true
      this.markDirty(scope)
    }
  }

  /**
   * Closing (a hand-over): gives back every slot and unused start in one call, and tells
   * the group, so that the others need not wait for this member's lease to run out.
   * WHY it waits for the call on its way: that call may grant slots or starts after this
   * one gave back (its answer is not read once closed), so this one goes after it and gives
   * back whatever it asked for too. (Were this call lost, the slots would still come back
   * once the lease is released: they are held under this process's token.)
   */
  async giveBack(): Promise<void> {
    this.closed = true
    this.ctx.cancelTimer(this.retryTimer)
    this.ctx.cancelTimer(this.leaseTimer)
    const sending = this.sending
    if (sending !== undefined) await sending.done.catch(() => undefined)
    const askedSlots = new Set<Scope>()
    const askedStarts = new Map<Scope, number[]>()
    for (const { scope, op } of sending?.sent ?? []) {
      if (op.kind === 'slots') askedSlots.add(scope)
      else askedStarts.set(scope, [...(askedStarts.get(scope) ?? []), ...seqsOf(op)])
    }
    const ops: LimitOp[] = []
    const given: string[] = []
    for (const scope of this.byId.values()) {
      this.ctx.cancelTimer(scope.rateTimer)
      const { concurrency, rate } = scope.limit.limit
      // A waiting member is unmarked too: the holders stop keeping a share for it. A scope
      // whose last call failed (refresh) may hold what that call asked for, had it landed.
      if (scope.slots > 0 || scope.waiting || scope.refused || scope.refresh || askedSlots.has(scope)) {
        ops.push({ kind: 'slots', scope: scope.id, concurrency: concurrency ?? 0, target: 0, wants: 0 })
        given.push(scope.id)
      }
      const starts = [...scope.starts, ...(askedStarts.get(scope) ?? [])]
      if (starts.length > 0) ops.push({ ...startsOp(scope, rate, 0, 0), giveBack: starts })
    }
    if (ops.length === 0) return
    await this.store.grantLimits(this.holder, ops)
    if (given.length > 0) await this.store.publishSlots(this.member, given)
  }

  /** Stops asking (closing before the name was held: nothing was asked). */
  close(): void {
    this.closed = true
    this.ctx.cancelTimer(this.retryTimer)
    this.ctx.cancelTimer(this.leaseTimer)
    for (const scope of this.byId.values()) this.ctx.cancelTimer(scope.rateTimer)
  }

  private find(limit: NameLimit, key: string): Scope | undefined {
    return limit.perKey ? this.keyed.get(limit.name)?.get(key) : this.totals.get(limit.name)
  }

  private scopeOf(limit: NameLimit, key: string): Scope {
    let scope = this.find(limit, key)
    if (scope === undefined) {
      const id = limitScope(limit.name, limit.perKey ? key : undefined)
      const made: Scope = {
        limit,
        key,
        id,
        slots: 0,
        refused: false,
        notices: 0,
        waiting: false,
        turnOver: false,
        contenders: 0,
        refresh: false,
        starts: [],
        startsUntil: 0,
        wantsStarts: false,
        rateRefused: false,
        rateTimer: new Timer(() => {
          made.rateRefused = false
          made.limit.granted(made.key)
        }),
        detached: false,
        dirty: false,
      }
      scope = made
      if (!limit.perKey) this.totals.set(limit.name, scope)
      else {
        let byKey = this.keyed.get(limit.name)
        if (byKey === undefined) this.keyed.set(limit.name, (byKey = new Map()))
        byKey.set(key, scope)
      }
      this.byId.set(id, scope)
    } else if (scope.limit !== limit) {
      // The name limited anew with the same scope: its slots are this member's field in
      // Redis either way; the new limit takes them over (its recount counts their jobs).
      scope.limit = limit
      scope.detached = false
    }
    return scope
  }

  private markDirty(scope: Scope): void {
    if (scope.dirty) return
    scope.dirty = true
    this.dirty.add(scope)
    this.queueFlush()
  }

  private queueFlush(): void {
    if (this.flushQueued || this.inFlight || this.closed) return
    this.flushQueued = true
    // The changes of this turn (a dispatch pass, the ends of jobs) share one call.
    setImmediate(this.flushLater)
  }

  private readonly flushLater = (): void => {
    this.flushQueued = false
    this.flush()
  }

  /** One call with what every scope that changed asks for or gives back. */
  private flush(): void {
    if (this.inFlight || !this.named || this.closed || this.dirty.size === 0) return
    if (this.subscribed === undefined) {
      // Before the first ask: a give-back published after a refusal must be heard.
      this.inFlight = true
      this.subscribed = this.store.subscribeSlots(this.member, (id) => this.heard(id))
      this.subscribed.then(
        () => {
          this.inFlight = false
          this.flush()
        },
        (err: unknown) => {
          this.subscribed = undefined
          this.failed(err)
        },
      )
      return
    }
    const sent: Sent[] = []
    for (const scope of this.dirty) {
      scope.dirty = false
      const op = this.slotsOf(scope)
      if (op !== undefined) sent.push(op)
      const starts = this.startsOf(scope)
      if (starts !== undefined) sent.push(starts)
      if (op === undefined && starts === undefined) this.forgetIfIdle(scope)
    }
    this.dirty.clear()
    if (sent.length === 0) return
    this.inFlight = true
    const done = this.store.grantLimits(
      this.holder,
      sent.map((s) => s.op),
    )
    this.sending = { sent, done }
    done
      .finally(() => {
        if (this.sending?.done === done) this.sending = undefined
      })
      .then(
        (answers) => this.answered(sent, answers),
        (err: unknown) => {
          // Each operation sets a value: the scopes are asked again with the targets of then,
          // even where nothing changes here (slots given back are lowered here already).
          for (const { scope, op } of sent) {
            if (op.kind === 'slots') scope.refresh = true
            this.markDirtyQuietly(scope)
          }
          this.failed(err)
        },
      )
  }

  private slotsOf(scope: Scope): Sent | undefined {
    const limit = scope.limit
    const concurrency = limit.limit.concurrency
    if (concurrency === undefined && scope.slots === 0) return undefined
    const used = limit.inUse(scope.key)
    const waiting = scope.detached ? 0 : limit.waiting(scope.key)
    const target = slotsTarget(concurrency, used, waiting, scope.detached, scope.contenders, scope.turnOver)
    const wants = Math.max(target, slotsWanted(concurrency, used, waiting, scope.detached))
    scope.turnOver = false
    const refresh = scope.refresh
    scope.refresh = false
    // A member marked waiting whose jobs left unsent (cancelled) tells the group it waits no more.
    const staleMark = scope.waiting && wants <= scope.slots
    if (slotsDecision(scope.slots, target, scope.refused) === 'none' && !refresh && !staleMark) return undefined
    const before = scope.slots
    // Given back at once: nothing here uses a slot on its way back.
    if (target < before) scope.slots = target
    return {
      scope,
      op: { kind: 'slots', scope: scope.id, concurrency: concurrency ?? 0, target, wants },
      before,
      notices: scope.notices,
      at: Date.now(),
    }
  }

  private startsOf(scope: Scope): Sent | undefined {
    const { rate, concurrency } = scope.limit.limit
    const giveBack = scope.starts
    let want = 0
    if (rate !== undefined && scope.wantsStarts) {
      const limit = scope.limit
      const free = concurrency === undefined ? undefined : scope.slots - limit.inUse(scope.key)
      want = startsWanted(rate.max, limit.waiting(scope.key), free, scope.rateRefused, scope.detached)
    }
    scope.wantsStarts = false
    if (want === 0 && giveBack.length === 0) return undefined
    scope.starts = []
    const op = { ...startsOp(scope, rate, want, this.seq), giveBack }
    this.seq += want
    return { scope, op, before: 0, notices: scope.notices, at: Date.now() }
  }

  private answered(sent: Sent[], answers: LimitAnswer[]): void {
    this.inFlight = false
    if (this.closed) return
    if (this.failures > 0) {
      this.failures = 0
      this.ctx.log.info('limit grants from the group work again')
    }
    const told: string[] = []
    const now = Date.now()
    for (let i = 0; i < sent.length; i++) {
      const { scope, op, before, notices, at } = sent[i] as Sent
      const answer = answers[i] ?? { granted: 0, waitMs: -1, waiting: 0 }
      if (op.kind === 'slots') {
        const had = scope.slots
        scope.slots = answer.granted
        const short = answer.granted < op.target
        const waits = answer.granted < op.wants
        // Given back, or began or stopped waiting: the others hear of it (holders keep a share while some wait).
        if (op.target < before || waits !== scope.waiting) told.push(scope.id)
        scope.waiting = waits
        // Wanting nothing, this member holds no share for anyone: who waits is none of its
        // business (no lease timer, no refresh; the scope may be forgotten). No polling.
        const idle = op.wants === 0 && answer.granted === 0
        const contenders = idle ? 0 : answer.waiting
        if (contenders !== scope.contenders) {
          scope.contenders = contenders
          this.markDirtyQuietly(scope)
        }
        if (short) {
          scope.refused = true
          // A give-back heard while the call was on its way: the refusal may be stale.
          if (scope.notices !== notices) {
            scope.refused = false
            this.markDirtyQuietly(scope)
          }
        } else {
          // Gave a slot back while wanting it (turns): it waits for a give-back, as if refused,
          // so that a waiting member gets the slot first.
          scope.refused = op.target < before && waits
        }
        // The soonest lease that matters: a holder's while refused, a waiting member's while
        // keeping a share for it (a waiter gone for good stops waiting then).
        if (answer.waitMs >= 0 && !idle) this.wakeAtLeaseEnd(now + answer.waitMs + 1)
        if (scope.slots > had) scope.limit.granted(scope.key)
      } else {
        for (let k = 0; k < answer.granted; k++) scope.starts.push(op.seq + k)
        scope.startsUntil = at + op.graceMs
        if (answer.granted > 0) {
          scope.limit.granted(scope.key)
          // What the pass leaves unused goes back next turn.
          this.markDirtyQuietly(scope)
        }
        if (answer.granted < op.want) {
          scope.rateRefused = true
          this.ctx.cancelTimer(scope.rateTimer)
          this.ctx.after(scope.rateTimer, Math.max(1, answer.waitMs))
        }
      }
      if (!scope.dirty) this.forgetIfIdle(scope)
    }
    if (told.length > 0)
      this.store
        .publishSlots(this.member, told)
        .catch((err: unknown) => this.ctx.log.warn({ err }, 'cannot tell the group of slots given back'))
    this.queueFlush()
  }

  private failed(err: unknown): void {
    if (this.failures === 0)
      this.ctx.log.warn({ err }, 'cannot ask the group for limit grants; retrying (slots held here are kept)')
    this.failures++
    if (this.closed) {
      this.inFlight = false
      return
    }
    this.inFlight = true
    this.ctx.after(this.retryTimer, Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1)))
  }

  /** Marks a scope for the next call without queueing one (the caller does, or a call is in flight). */
  private markDirtyQuietly(scope: Scope): void {
    if (scope.dirty) return
    scope.dirty = true
    this.dirty.add(scope)
  }

  /**
   * Another member gave slots of scope `id` back, or began or stopped waiting for some: a
   * refusal of it may be granted now, and a holder asks who waits (its share changes).
   */
  private heard(id: string): void {
    const scope = this.byId.get(id)
    if (scope === undefined) return
    scope.notices++
    if (scope.refused) scope.refused = false
    else if (scope.slots > 0 || scope.contenders > 0) scope.refresh = true
    else return
    this.markDirty(scope)
  }

  private wakeAtLeaseEnd(at: number): void {
    if (at >= this.leaseTimerAt) return
    this.ctx.cancelTimer(this.leaseTimer)
    this.leaseTimerAt = at
    this.ctx.after(this.leaseTimer, Math.max(1, at - Date.now()))
  }

  /**
   * A holder's or a waiting member's lease could have run out: every refused scope asks
   * again, and every scope kept at a share asks who still waits (the script drops a gone
   * member's fields).
   */
  private leaseRanOut(): void {
    this.leaseTimerAt = Number.POSITIVE_INFINITY
    for (const scope of this.byId.values()) {
      if (!scope.refused && scope.contenders === 0) continue
      scope.refused = false
      if (scope.contenders > 0) scope.refresh = true
      this.markDirty(scope)
    }
  }

  /** A scope that holds, wants and waits for nothing is forgotten (keys come and go). */
  private forgetIfIdle(scope: Scope): void {
    if (
      scope.slots > 0 ||
      scope.starts.length > 0 ||
      scope.refused ||
      scope.rateRefused ||
      scope.dirty ||
      scope.waiting ||
      scope.contenders > 0
    )
      return
    if (!scope.detached && (scope.limit.inUse(scope.key) > 0 || scope.limit.waiting(scope.key) > 0)) return
    this.byId.delete(scope.id)
    const name = scope.limit.name
    if (this.totals.get(name) === scope) this.totals.delete(name)
    const byKey = this.keyed.get(name)
    if (byKey?.get(scope.key) === scope) {
      byKey.delete(scope.key)
      if (byKey.size === 0) this.keyed.delete(name)
    }
  }
}

/** The seqs of the starts `op` asked for. */
function seqsOf(op: StartsOp): number[] {
  return Array.from({ length: op.want }, (_, k) => op.seq + k)
}

/** A starts operation of `scope`; without a rate (removed since), one that only gives back. */
function startsOp(scope: Scope, rate: RateOptions | undefined, want: number, seq: number): StartsOp {
  const perMs = rate === undefined ? 0 : Math.ceil(rate.per * 1000)
  const graceMs = startGraceMs(perMs)
  return { kind: 'starts', scope: scope.id, max: rate?.max ?? 0, perMs, want, graceMs, seq, giveBack: [] }
}

/**
 * Bytes held, as a whole, by connections whose peers have not proven themselves yet: the
 * memory strangers can make a distributor hold is this limit, not a per-connection limit
 * times the number of connections.
 */
export class ByteBudget {
  private used = 0

  constructor(readonly limit: number) {}

  /** Bytes charged now. */
  get held(): number {
    return this.used
  }

  /** Charges `bytes` (a negative number gives back); false, charging nothing, past the limit. */
  charge(bytes: number): boolean {
    if (bytes > 0 && this.used + bytes > this.limit) return false
    this.used += bytes
    return true
  }
}

import type { DistributorLink } from './distributor-link.js'

/** Hops followed from a member to the one answering for it: adoptions chain (C adopted B, which had adopted A). */
const MAX_HOPS = 8

/**
 * Which connected distributor receives what is filed under a distributor identity
 * (`group/name`, see protocol/identity.ts). The distributor itself, when it is connected;
 * else the member of its group that said it answers for it (it adopted the gone member's
 * spool). A record filed before identities existed names the address dialled: it goes to
 * whoever answers at that address now.
 *
 * Kept in memory only: every distributor repeats what it answers for in each welcome.
 */
export class DistributorDirectory {
  /** Ready links by the identity their welcome gave. */
  private readonly byIdentity = new Map<string, DistributorLink>()
  /** Identity (or legacy address) → the identity that answers for it. */
  private readonly aliases = new Map<string, string>()

  /** `link` finished its handshake: it receives its own identity's work and what it answers for. */
  up(link: DistributorLink): void {
    this.byIdentity.set(link.identity, link)
    this.aliases.set(link.address, link.identity)
    this.answers(link, link.answersFor)
  }

  /** `link` adopted gone members `names` of its group. */
  answers(link: DistributorLink, names: readonly string[]): void {
    for (const name of names) {
      const identity = `${link.group}/${name}`
      if (identity !== link.identity) this.aliases.set(identity, link.identity)
    }
  }

  down(link: DistributorLink): void {
    if (this.byIdentity.get(link.identity) === link) this.byIdentity.delete(link.identity)
  }

  /**
   * Whether `link` is the one to deliver what is filed under `key`: it receives it now, or
   * no link does and `key` names `link`'s distributor (its identity, a gone member it answers
   * for, or the address it dials, for records older than identities).
   */
  owedTo(key: string, link: DistributorLink): boolean {
    const receiver = this.linkFor(key)
    if (receiver !== undefined) return receiver === link
    if (key === link.address) return true
    if (link.identity === '') return false
    if (link.answersFor.some((name) => `${link.group}/${name}` === key)) return true
    let current: string | undefined = key
    for (let hop = 0; hop < MAX_HOPS && current !== undefined; hop++) {
      if (current === link.identity) return true
      current = this.aliases.get(current)
    }
    return false
  }

  /** The ready link that receives what is filed under `key`, if any. */
  linkFor(key: string): DistributorLink | undefined {
    let current: string | undefined = key
    for (let hop = 0; hop < MAX_HOPS && current !== undefined; hop++) {
      const link = this.byIdentity.get(current)
      if (link !== undefined) return link
      current = this.aliases.get(current)
    }
    return undefined
  }
}

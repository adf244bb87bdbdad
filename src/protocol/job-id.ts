import { randomFillSync } from 'node:crypto'
import { urlAlphabet } from 'nanoid'

/** nanoid's default length. */
const ID_LENGTH = 21
/** The last characters name the job's slot in the distributor's table (see JobTable). */
const SLOT_CHARS = 5
const RANDOM_CHARS = ID_LENGTH - SLOT_CHARS
/** Slots an id can name: 64 symbols per character. */
export const MAX_SLOTS = 64 ** SLOT_CHARS
/**
 * Slots past which a table indexed by slot (JobTable, LiveJobs) lets its arrays go once it
 * is empty: after a burst of a million jobs they hold megabytes, while a small table
 * keeps its own so that one job in flight does not reallocate them per job.
 */
export const SLOT_TABLE_SHRINK_ABOVE = 1024
/** Ids drawn per `randomFillSync` call: one syscall serves a burst of enqueues. */
const IDS_PER_FILL = 512

const CODES = Uint16Array.from(urlAlphabet, (c) => c.charCodeAt(0))
/**
 * The first character's symbols: the alphabet without '-', so that no id reads as an option
 * on a command line (`jr job ID`). '-' maps to another symbol: that one comes twice as often
 * in the first place, a loss of 0.02 bits of the 96.
 */
const FIRST_CODES = CODES.map((code) => (code === 45 ? 95 : code))
/** Character code → its symbol's value, -1 off the alphabet. */
const VALUES = new Int8Array(128).fill(-1)
for (const [value, code] of CODES.entries()) VALUES[code] = value
const pool = new Uint8Array(RANDOM_CHARS * IDS_PER_FILL)
let offset = pool.length

/**
 * A nanoid-format id (21 characters of the URL-safe alphabet): 16 from crypto random bytes
 * (96 bits), then `slot` in 5 characters.
 *
 * Why the slot: the distributor finds a job from the id its feedback names by reading the
 * slot, an array index, instead of hashing the id into a table of every unfinished job;
 * with a hundred thousand jobs in flight that lookup (and the insert and delete around it)
 * was the largest cost of an enqueue and of a feedback. A node files the jobs it holds by
 * the same slot (node/live-jobs.ts). The random part keeps ids unique and unguessable; a
 * slot is reused, an id is not.
 *
 * Why not `nanoid()` itself: it builds the id with 21 string concatenations, a rope that
 * V8 flattens into a second string when the id is first hashed; one `fromCharCode` makes a
 * flat string at once.
 */
export function newJobId(slot: number): string {
  if (offset === pool.length) {
    randomFillSync(pool)
    offset = 0
  }
  const b = pool
  const o = offset
  offset += RANDOM_CHARS
  // 64 symbols: the low 6 bits of each random byte pick one without bias.
  return String.fromCharCode(
    FIRST_CODES[b[o]! & 63]!,
    CODES[b[o + 1]! & 63]!,
    CODES[b[o + 2]! & 63]!,
    CODES[b[o + 3]! & 63]!,
    CODES[b[o + 4]! & 63]!,
    CODES[b[o + 5]! & 63]!,
    CODES[b[o + 6]! & 63]!,
    CODES[b[o + 7]! & 63]!,
    CODES[b[o + 8]! & 63]!,
    CODES[b[o + 9]! & 63]!,
    CODES[b[o + 10]! & 63]!,
    CODES[b[o + 11]! & 63]!,
    CODES[b[o + 12]! & 63]!,
    CODES[b[o + 13]! & 63]!,
    CODES[b[o + 14]! & 63]!,
    CODES[b[o + 15]! & 63]!,
    CODES[(slot >>> 24) & 63]!,
    CODES[(slot >>> 18) & 63]!,
    CODES[(slot >>> 12) & 63]!,
    CODES[(slot >>> 6) & 63]!,
    CODES[slot & 63]!,
  )
}

/** The slot an id names; -1 for a string that is not an id of this format. */
export function slotOf(id: string): number {
  // `cancel(id)` is public: whatever it is given finds nothing rather than throwing.
  if (typeof id !== 'string' || id.length !== ID_LENGTH) return -1
  const c0 = id.charCodeAt(RANDOM_CHARS)
  const c1 = id.charCodeAt(RANDOM_CHARS + 1)
  const c2 = id.charCodeAt(RANDOM_CHARS + 2)
  const c3 = id.charCodeAt(RANDOM_CHARS + 3)
  const c4 = id.charCodeAt(RANDOM_CHARS + 4)
  if ((c0 | c1 | c2 | c3 | c4) > 127) return -1
  const v0 = VALUES[c0]!
  const v1 = VALUES[c1]!
  const v2 = VALUES[c2]!
  const v3 = VALUES[c3]!
  const v4 = VALUES[c4]!
  if ((v0 | v1 | v2 | v3 | v4) < 0) return -1
  return (v0 << 24) | (v1 << 18) | (v2 << 12) | (v3 << 6) | v4
}

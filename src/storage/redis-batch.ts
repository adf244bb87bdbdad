/*
 * How a RedisStore sends its job writes: every save, update, finish and removal of one
 * turn of the event loop is encoded into one buffer and applied by one call of APPLY_LUA,
 * in the order the writes were made.
 *
 * Why one buffer: ioredis costs about a microsecond per command argument (a job save has
 * some 26), many times what Redis spends on it; one binary argument per batch costs
 * nothing per job. Why one script call: an EVALSHA per write cost Redis several times
 * what its few commands do. Why Lua rather than MULTI: updates and finishes depend on
 * what is stored (a patch of a missing job must not create a half record), which MULTI
 * cannot express without WATCH. All keys share the node's hash tag, so building job keys
 * inside the script stays in the slot of the declared keys.
 *
 * The buffer is a sequence of values, each a 4-byte big-endian length and its bytes,
 * read back with Lua's struct library. Operations, each an op code and its values:
 *   s id open n field value …              save (replace) a job; open: '1' when unfinished
 *   u id setop n field value …             update an existing job; setop: 'add' | 'rem' | ''
 *   f id fbkey fbbytes remove setop n …    store a feedback; remove the job ('1') or patch it
 *   r id                                   remove a job
 * The feedback is stored even when its job is gone: it must never be lost.
 */

/** KEYS: unfinished, jobs, outbox. ARGV: job key prefix, the operations buffer. */
export const APPLY_LUA = `
local prefix, ops = ARGV[1], ARGV[2]
local pos, size = 1, #ops
local function value()
  local v
  v, pos = struct.unpack('>I4c0', ops, pos)
  return v
end
local function fields()
  local n = tonumber(value())
  local out = {}
  for k = 1, 2 * n do out[k] = value() end
  return out
end
local function membership(setop, id)
  if setop == 'add' then redis.call('SADD', KEYS[1], id)
  elseif setop == 'rem' then redis.call('SREM', KEYS[1], id) end
end
local function patch(key, f)
  if #f > 0 then redis.call('HSET', key, unpack(f)) end
end
local function remove(key, id)
  redis.call('DEL', key)
  redis.call('SREM', KEYS[1], id)
  redis.call('SREM', KEYS[2], id)
end
while pos <= size do
  local op, id = value(), value()
  local key = prefix .. id
  if op == 's' then
    local open = value()
    redis.call('DEL', key)
    patch(key, fields())
    redis.call('SADD', KEYS[2], id)
    membership(open == '1' and 'add' or 'rem', id)
  elseif op == 'u' then
    local setop, f = value(), fields()
    if redis.call('EXISTS', key) == 1 then
      patch(key, f)
      membership(setop, id)
    end
  elseif op == 'f' then
    local fbkey, fb, removeJob, setop = value(), value(), value(), value()
    local f = fields()
    redis.call('HSET', KEYS[3], fbkey, fb)
    if removeJob == '1' then
      remove(key, id)
    elseif redis.call('EXISTS', key) == 1 then
      patch(key, f)
      membership(setop, id)
    end
  elseif op == 'r' then
    remove(key, id)
  else
    return redis.error_reply('unknown job operation ' .. tostring(op))
  end
end
return 1
`

/** Operations per script call at most: a call blocks Redis while it runs. */
export const MAX_BATCH_OPS = 1_000

const INITIAL_BYTES = 16 * 1024

/** Encodes values as the script reads them, into one growing buffer. */
export class OpWriter {
  private buf = Buffer.allocUnsafe(INITIAL_BYTES)
  private pos = 0
  ops = 0

  /** Adds values; a string goes as UTF-8. */
  add(...values: (string | Uint8Array)[]): void {
    for (const v of values) this.value(v)
  }

  /** Adds a field list: its length in pairs, then the names and values. */
  fields(list: readonly (string | Uint8Array)[]): void {
    this.value(String(list.length / 2))
    for (const v of list) this.value(v)
  }

  value(v: string | Uint8Array): void {
    if (typeof v === 'string') {
      // At most 3 bytes per UTF-16 unit; the real length is known after writing.
      this.reserve(4 + 3 * v.length)
      const n = this.buf.write(v, this.pos + 4, 'utf8')
      this.buf.writeUInt32BE(n, this.pos)
      this.pos += 4 + n
    } else {
      this.reserve(4 + v.length)
      this.buf.writeUInt32BE(v.length, this.pos)
      this.buf.set(v, this.pos + 4)
      this.pos += 4 + v.length
    }
  }

  /** The encoded operations (a view of the writer's buffer: take it once, at the end). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.pos)
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n))
    this.buf.copy(bigger, 0, 0, this.pos)
    this.buf = bigger
  }
}

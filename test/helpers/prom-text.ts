/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), for tests: every
 * line must be blank, a `# HELP`, a `# TYPE`, another comment, or a sample
 * `name{label="value",...} value [timestamp]`, and the samples must fit the families their
 * `# TYPE` declared. Anything else throws, naming the line.
 *
 * Checked beyond the grammar: a family is declared once, before its samples, and its
 * samples are contiguous; a sample's name is its family's (with `_bucket`, `_sum`, `_count`
 * for a histogram or summary); no two samples share a name and label set; counters are not
 * negative; each histogram series has buckets with ascending `le`, non-decreasing counts, a
 * `+Inf` bucket equal to its `_count`, and a `_sum`.
 */

export type FamilyType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped'

export interface PromSample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface PromFamily {
  name: string
  type: FamilyType
  help: string | undefined
  samples: PromSample[]
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES: readonly string[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped']

export class PromFormatError extends Error {
  constructor(lineNo: number, line: string, why: string) {
    super(`line ${lineNo}: ${why}: ${JSON.stringify(line)}`)
  }
}

/**
 * A sample value as Go's ParseFloat reads it, which is what the format specifies: decimal
 * floats, and NaN and the infinities in any case (prom-client writes `Nan`).
 */
function parseValue(text: string): number | undefined {
  if (/^[-+]?nan$/i.test(text)) return Number.NaN
  if (/^\+?inf(inity)?$/i.test(text)) return Number.POSITIVE_INFINITY
  if (/^-inf(inity)?$/i.test(text)) return Number.NEGATIVE_INFINITY
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined
  return Number(text)
}

/** `{a="x",b="y"}` (escapes `\\`, `\"`, `\n` in values), from `at` in `line`; returns the labels and where they end. */
function parseLabels(line: string, at: number, fail: (why: string) => never): [Record<string, string>, number] {
  const labels: Record<string, string> = {}
  let i = at + 1
  for (;;) {
    if (line[i] === '}') return [labels, i + 1]
    const eq = line.indexOf('=', i)
    if (eq < 0) fail('a label without =')
    const name = line.slice(i, eq)
    if (!LABEL_NAME.test(name) || name.startsWith('__')) fail(`bad label name ${JSON.stringify(name)}`)
    if (Object.hasOwn(labels, name)) fail(`label ${name} given twice`)
    if (line[eq + 1] !== '"') fail(`the value of label ${name} is not quoted`)
    let value = ''
    let j = eq + 2
    for (;;) {
      const c = line[j]
      if (c === undefined) fail(`the value of label ${name} is not closed`)
      if (c === '"') break
      if (c === '\\') {
        const next = line[j + 1]
        if (next === '\\') value += '\\'
        else if (next === '"') value += '"'
        else if (next === 'n') value += '\n'
        else fail(`bad escape \\${next ?? ''} in label ${name}`)
        j += 2
        continue
      }
      value += c
      j++
    }
    labels[name] = value
    i = j + 1
    if (line[i] === ',') i++
    else if (line[i] !== '}') fail(`expected , or } after label ${name}`)
  }
}

function familyOf(sampleName: string, current: PromFamily | undefined): boolean {
  if (current === undefined) return false
  if (sampleName === current.name) return current.type !== 'histogram'
  if (current.type === 'histogram')
    return [`${current.name}_bucket`, `${current.name}_sum`, `${current.name}_count`].includes(sampleName)
  if (current.type === 'summary') return [`${current.name}_sum`, `${current.name}_count`].includes(sampleName)
  return false
}

/** Parses `text`, throwing PromFormatError at the first line that breaks the format. */
export function parsePromText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>()
  const helps = new Map<string, string>()
  const seen = new Set<string>()
  let current: PromFamily | undefined
  if (text.length > 0 && !text.endsWith('\n'))
    throw new PromFormatError(0, text.slice(-40), 'the text does not end with a newline')
  const lines = text.split('\n')
  lines.pop()
  lines.forEach((line, index) => {
    const lineNo = index + 1
    const fail = (why: string): never => {
      throw new PromFormatError(lineNo, line, why)
    }
    if (line.trim() === '') return
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
      if (m === null) return // another comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string]
      if (!METRIC_NAME.test(name)) fail(`bad metric name ${JSON.stringify(name)}`)
      if (kind === 'HELP') {
        if (helps.has(name)) fail(`a second HELP for ${name}`)
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) fail('bad escape in HELP')
        helps.set(name, rest)
        const family = families.get(name)
        if (family !== undefined) {
          if (family.samples.length > 0) fail(`HELP for ${name} after its samples`)
          family.help = rest
        }
        return
      }
      if (!TYPES.includes(rest)) fail(`unknown type ${JSON.stringify(rest)}`)
      if (families.has(name)) fail(`a second TYPE for ${name}`)
      current = { name, type: rest as FamilyType, help: helps.get(name), samples: [] }
      families.set(name, current)
      return
    }
    const nameEnd = line.search(/[{ ]/)
    if (nameEnd <= 0) fail('not a sample')
    const name = line.slice(0, nameEnd)
    if (!METRIC_NAME.test(name)) fail(`bad metric name ${JSON.stringify(name)}`)
    let labels: Record<string, string> = {}
    let rest = nameEnd
    if (line[nameEnd] === '{') [labels, rest] = parseLabels(line, nameEnd, fail)
    if (line[rest] !== ' ') fail('no space before the value')
    const fields = line.slice(rest + 1).split(' ')
    if (fields.length < 1 || fields.length > 2 || fields.some((f) => f === ''))
      fail('expected a value and at most a timestamp')
    const value = parseValue(fields[0] as string)
    if (value === undefined) fail(`bad value ${JSON.stringify(fields[0])}`)
    if (fields[1] !== undefined && !/^-?\d+$/.test(fields[1])) fail(`bad timestamp ${JSON.stringify(fields[1])}`)
    if (!familyOf(name, current)) fail(`sample ${name} outside its family's TYPE block`)
    const family = current as PromFamily
    if (family.type === 'counter' && (value as number) < 0) fail('a negative counter')
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`
    if (seen.has(key)) fail('a second sample with this name and these labels')
    seen.add(key)
    family.samples.push({ name, labels, value: value as number })
  })
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family)
  return families
}

/** The series of a histogram: buckets ascending in `le`, cumulative, +Inf = _count, a _sum. */
function checkHistogram(family: PromFamily): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>()
  for (const s of family.samples) {
    const { le, ...rest } = s.labels
    const key = JSON.stringify(Object.entries(rest).sort())
    let entry = series.get(key)
    if (entry === undefined) series.set(key, (entry = { buckets: [] }))
    if (s.name.endsWith('_bucket')) {
      if (le === undefined) throw new Error(`${family.name}: a bucket without le`)
      const bound = parseValue(le)
      if (bound === undefined) throw new Error(`${family.name}: bad le ${le}`)
      entry.buckets.push([bound, s.value])
    } else if (s.name.endsWith('_sum')) entry.sum = s.value
    else entry.count = s.value
  }
  for (const [key, { buckets, sum, count }] of series) {
    const where = `${family.name}${key}`
    if (sum === undefined || count === undefined) throw new Error(`${where}: no _sum or _count`)
    const last = buckets.at(-1)
    if (last === undefined || last[0] !== Number.POSITIVE_INFINITY) throw new Error(`${where}: no +Inf bucket last`)
    if (last[1] !== count) throw new Error(`${where}: +Inf bucket ${last[1]} is not _count ${count}`)
    for (let i = 1; i < buckets.length; i++) {
      const [prevLe, prev] = buckets[i - 1] as [number, number]
      const [le, n] = buckets[i] as [number, number]
      if (le <= prevLe) throw new Error(`${where}: le ${le} after ${prevLe}`)
      if (n < prev) throw new Error(`${where}: bucket le=${le} holds ${n}, fewer than ${prev} below it`)
    }
  }
}

/**
 * The value of the sample `name` whose labels include `labels`; throws when none or
 * several match, so that a test names exactly one series.
 */
export function sampleValue(
  families: Map<string, PromFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const matches: PromSample[] = []
  for (const family of families.values()) {
    for (const s of family.samples) {
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) matches.push(s)
    }
  }
  if (matches.length !== 1) {
    throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`)
  }
  return (matches[0] as PromSample).value
}

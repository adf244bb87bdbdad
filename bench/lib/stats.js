// Small statistics and formatting helpers shared by the benchmarks.

/** Nearest-rank percentile of an already sorted array. */
export function percentileSorted(sorted, p) {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

/** p50/p90/p99/max of a list of samples (copied, then sorted). */
export function latencySummary(samples) {
  const sorted = Float64Array.from(samples).sort()
  return {
    count: sorted.length,
    p50: percentileSorted(sorted, 50),
    p90: percentileSorted(sorted, 90),
    p99: percentileSorted(sorted, 99),
    max: sorted.length === 0 ? NaN : sorted[sorted.length - 1],
  }
}

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

export function minMax(values) {
  const v = values.filter((x) => Number.isFinite(x))
  if (v.length === 0) return [NaN, NaN]
  return [Math.min(...v), Math.max(...v)]
}

/** A number with a sensible number of digits for a table cell. */
export function fmt(x) {
  if (x === undefined || x === null || Number.isNaN(x)) return '-'
  if (!Number.isFinite(x)) return String(x)
  const a = Math.abs(x)
  if (a >= 100_000) return Math.round(x).toLocaleString('en-US')
  if (a >= 1000) return Math.round(x).toLocaleString('en-US')
  if (a >= 100) return x.toFixed(0)
  if (a >= 10) return x.toFixed(1)
  if (a >= 1) return x.toFixed(2)
  if (a === 0) return '0'
  return x.toFixed(3)
}

export function hrMs(start) {
  return Number(process.hrtime.bigint() - start) / 1e6
}

export function pad(s, n, right = false) {
  s = String(s)
  if (s.length >= n) return s
  return right ? ' '.repeat(n - s.length) + s : s + ' '.repeat(n - s.length)
}

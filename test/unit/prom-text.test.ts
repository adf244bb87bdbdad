import { describe, expect, it } from 'vitest'
import { PromFormatError, parsePromText, sampleValue } from '../helpers/prom-text.js'

/** The test helper that every metrics test relies on: it must refuse what Prometheus refuses. */
describe('parsePromText', () => {
  const good = [
    '# HELP jr_x_total Things, with a \\\\ and a \\n in the help.',
    '# TYPE jr_x_total counter',
    'jr_x_total{name="a",group="g"} 3',
    'jr_x_total{name="q\\"uote\\\\d\\n"} 1.5e3 1700000000000',
    '',
    '# a plain comment',
    '# TYPE jr_h histogram',
    'jr_h_bucket{le="0.1"} 1',
    'jr_h_bucket{le="1"} 2',
    'jr_h_bucket{le="+Inf"} 2',
    'jr_h_sum 0.6',
    'jr_h_count 2',
    '# TYPE jr_g gauge',
    'jr_g Nan',
    'jr_g{a="1"} -Inf',
    '',
  ].join('\n')

  it('reads families, labels (unescaped), values and histograms', () => {
    const families = parsePromText(good)
    expect([...families.keys()]).toEqual(['jr_x_total', 'jr_h', 'jr_g'])
    expect(families.get('jr_x_total')?.help).toBe('Things, with a \\\\ and a \\n in the help.')
    expect(sampleValue(families, 'jr_x_total', { name: 'q"uote\\d\n' })).toBe(1500)
    expect(sampleValue(families, 'jr_h_count')).toBe(2)
    expect(sampleValue(families, 'jr_g', { a: '1' })).toBe(Number.NEGATIVE_INFINITY)
    expect(families.get('jr_g')?.samples[0]?.value).toBeNaN()
  })

  it.each([
    ['a sample before any TYPE', 'jr_a 1\n'],
    ['a sample of another family', '# TYPE jr_a gauge\njr_b 1\n'],
    ['a bad metric name', '# TYPE 1jr gauge\n'],
    ['an unknown type', '# TYPE jr_a meter\n'],
    ['a second TYPE', '# TYPE jr_a gauge\n# TYPE jr_a gauge\n'],
    ['a bad value', '# TYPE jr_a gauge\njr_a one\n'],
    ['no value', '# TYPE jr_a gauge\njr_a{x="1"}\n'],
    ['an unquoted label value', '# TYPE jr_a gauge\njr_a{x=1} 1\n'],
    ['a bad escape', '# TYPE jr_a gauge\njr_a{x="\\t"} 1\n'],
    ['a label given twice', '# TYPE jr_a gauge\njr_a{x="1",x="2"} 1\n'],
    ['a duplicate series', '# TYPE jr_a gauge\njr_a{x="1"} 1\njr_a{x="1"} 2\n'],
    ['a negative counter', '# TYPE jr_a_total counter\njr_a_total -1\n'],
    ['a histogram sample without a suffix', '# TYPE jr_h histogram\njr_h 1\n'],
    ['a missing final newline', '# TYPE jr_a gauge\njr_a 1'],
  ])('refuses %s', (_why, text) => {
    expect(() => parsePromText(text)).toThrow(PromFormatError)
  })

  it.each([
    ['no +Inf bucket', 'jr_h_bucket{le="1"} 1\njr_h_sum 1\njr_h_count 1\n'],
    ['+Inf not the count', 'jr_h_bucket{le="+Inf"} 2\njr_h_sum 1\njr_h_count 1\n'],
    [
      'falling buckets',
      'jr_h_bucket{le="1"} 2\njr_h_bucket{le="2"} 1\njr_h_bucket{le="+Inf"} 2\njr_h_sum 1\njr_h_count 2\n',
    ],
    ['no _sum', 'jr_h_bucket{le="+Inf"} 1\njr_h_count 1\n'],
  ])('refuses a histogram with %s', (_why, samples) => {
    expect(() => parsePromText(`# TYPE jr_h histogram\n${samples}`)).toThrow(/jr_h/)
  })
})

import { describe, expect, it } from 'vitest'
import { parseStorageUrl, redactUrl } from '../../src/storage/redis/url.js'

describe('parseStorageUrl', () => {
  it.each([
    ['redis://127.0.0.1:6380', { kind: 'single', host: '127.0.0.1', port: 6380, db: 0, tls: false }],
    ['redis://localhost', { kind: 'single', host: 'localhost', port: 6379, db: 0, tls: false }],
    ['redis://cache:7000/3', { kind: 'single', host: 'cache', port: 7000, db: 3, tls: false }],
    ['rediss://[::1]:6390/', { kind: 'single', host: '::1', port: 6390, db: 0, tls: true }],
    [
      'redis://app:p%40ss@db:6379/1',
      { kind: 'single', host: 'db', port: 6379, db: 1, tls: false, username: 'app', password: 'p@ss' },
    ],
    ['redis://:secret@db', { kind: 'single', host: 'db', port: 6379, db: 0, tls: false, password: 'secret' }],
    [
      'redis-cluster://h1:7000,h2:7001,[::1]',
      {
        kind: 'cluster',
        nodes: [
          { host: 'h1', port: 7000 },
          { host: 'h2', port: 7001 },
          { host: '::1', port: 6379 },
        ],
        tls: false,
      },
    ],
  ])('parses %s', (url, expected) => {
    expect(parseStorageUrl(url)).toEqual(expected)
  })

  it.each([
    ['memory', 'must start with'],
    ['http://h:1', 'must start with'],
    ['redis://', 'names no host'],
    ['redis://h:0', 'port 0'],
    ['redis://h:99999', 'port 99999'],
    ['redis://h/x', "database 'x'"],
    ['redis://a:1,b:2', 'redis-cluster://'],
    ['redis-cluster://a:1/2', 'only db 0'],
    ['redis://h?db=1', 'query'],
  ])('rejects %s', (url, why) => {
    expect(() => parseStorageUrl(url)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG', message: expect.stringContaining(why) }),
    )
  })

  it('keeps passwords out of its messages', () => {
    expect(() => parseStorageUrl('redis://u:topsecret@h:0')).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('topsecret') }),
    )
    expect(redactUrl('redis://u:topsecret@h:1/0')).toBe('redis://u:***@h:1/0')
    expect(redactUrl('redis://h:1')).toBe('redis://h:1')
  })
})

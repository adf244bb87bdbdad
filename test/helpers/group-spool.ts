import { Redis } from 'ioredis'
import { memberKeys } from '../../src/storage/redis/group-keys.js'

/** The ids in the spool of the member `name` of `group`, read from the Redis at `url`. */
export async function spoolIds(url: string, group: string, name: string): Promise<Set<string>> {
  const client = new Redis(url)
  try {
    return new Set(await client.hkeys(memberKeys(group, name).spool))
  } finally {
    client.disconnect()
  }
}

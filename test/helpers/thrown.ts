/** The error `fn` throws; fails when it throws none. */
export function thrown(fn: () => unknown): { code?: string; message: string } {
  try {
    fn()
  } catch (err) {
    return err as { code?: string; message: string }
  }
  throw new Error('expected a throw')
}

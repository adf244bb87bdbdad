/**
 * Runs `fn`, lets any rejection it left behind reach Node's unhandled-rejection hook (which
 * fires after the microtask queue drains, so two turns of the event loop), and returns the
 * reasons seen: a test expects an empty list.
 */
export async function unhandledRejectionsOf(fn: () => Promise<void>): Promise<unknown[]> {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason)
  }
  process.on('unhandledRejection', onUnhandled)
  try {
    await fn()
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
  return unhandled
}

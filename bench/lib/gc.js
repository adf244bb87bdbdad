// A full garbage collection on demand, without requiring `node --expose-gc` on the command line.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

let gcFn = globalThis.gc
if (typeof gcFn !== 'function') {
  setFlagsFromString('--expose-gc')
  gcFn = runInNewContext('gc')
}

/** Collects twice (weak references and finalizers need a second pass) and returns memoryUsage(). */
export function collectAndMeasure() {
  gcFn()
  gcFn()
  return process.memoryUsage()
}

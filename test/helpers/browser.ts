import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'

/**
 * The system's Chromium (Debian's `chromium` package, which .ci/run installs): the tests
 * drive it with playwright-core and never download a browser.
 */
export function chromiumPath(): string {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const path = join(dir, name)
      try {
        accessSync(path, constants.X_OK)
        return path
      } catch {
        // not in this directory
      }
    }
  }
  throw new Error('no chromium on PATH: install it (apt-get install -y chromium), as .ci/run does')
}

/** A headless Chromium; root (as in a CI container) needs the sandbox off. */
export function launchChromium(): Promise<Browser> {
  const root = process.getuid?.() === 0
  return chromium.launch({ executablePath: chromiumPath(), args: root ? ['--no-sandbox'] : [] })
}

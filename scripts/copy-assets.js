// Part of `npm run build`: tsc compiles only TypeScript, so the dashboard's files are copied
// beside the compiled module that serves them (dist/admin/dashboard/assets), which the
// package ships. Plain Node, so the build needs no shell.
import { cpSync, rmSync } from 'node:fs'

const from = new URL('../src/admin/dashboard/assets/', import.meta.url)
const to = new URL('../dist/admin/dashboard/assets/', import.meta.url)

// A file removed from the sources must not live on in dist.
rmSync(to, { recursive: true, force: true })
cpSync(from, to, { recursive: true })

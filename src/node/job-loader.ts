import { readdir, stat } from 'node:fs/promises'
import { extname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { coerceError, JobFileError } from '../errors.js'
import { loadInto, type JobRegistry } from './registry.js'

const JOB_FILE_EXTENSIONS = new Set(['.js', '.mjs', '.ts', '.mts'])

async function listJobFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true })
  const files: string[] = []
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && !entry.name.startsWith('.')) files.push(...(await listJobFiles(path)))
    } else if (JOB_FILE_EXTENSIONS.has(extname(entry.name)) && !entry.name.endsWith('.d.ts')) {
      files.push(path)
    }
  }
  return files
}

let typeScriptReady: Promise<void> | undefined

/**
 * Node 20 cannot import TypeScript by itself; tsx's loader hooks let a user's `.ts` job
 * files load as they are. Registered once, and only when Node refused a `.ts` file (a
 * runtime or test runner that already compiles TypeScript needs no hooks).
 */
function ensureTypeScript(): Promise<void> {
  typeScriptReady ??= import('tsx/esm/api').then(({ register }) => {
    register()
  })
  return typeScriptReady
}

async function importJobFile(url: string): Promise<void> {
  try {
    await import(url)
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err
    await ensureTypeScript()
    // A failed import stays cached under its URL: retry under another one.
    await import(`${url}&ts`)
  }
}

let loadCount = 0

/**
 * Imports every job file under `directory` (recursively, in name order) into `registry`.
 * Each load imports fresh module instances (a query on the URL), so two nodes of one
 * process that load the same directory each get every definition.
 */
export async function loadJobDirectory(directory: string, registry: JobRegistry): Promise<string[]> {
  const dir = resolve(directory)
  let info
  try {
    info = await stat(dir)
  } catch {
    throw new JobFileError(`job directory '${directory}' does not exist (resolved to ${dir})`)
  }
  if (!info.isDirectory()) throw new JobFileError(`job directory '${directory}' is not a directory`)
  const files = await listJobFiles(dir)
  const instance = ++loadCount
  await loadInto(registry, async () => {
    for (const file of files) {
      const url = `${pathToFileURL(file).href}?jr-load=${instance}`
      try {
        await importJobFile(url)
      } catch (err) {
        throw new JobFileError(`cannot load job file ${file}: ${coerceError(err).message}`, { cause: err })
      }
    }
  })
  return files
}

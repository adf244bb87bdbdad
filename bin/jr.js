#!/usr/bin/env node
import { main } from '../dist/cli/jr.js'

process.exitCode = await main(process.argv)

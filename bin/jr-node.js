#!/usr/bin/env node
import { main } from '../dist/cli/jr-node.js'

await main(process.argv)

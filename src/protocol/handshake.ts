import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/**
 * Mutual proof of a shared secret without sending it: each side contributes a fresh nonce,
 * and each proof covers both nonces plus a role label, so a captured proof can neither be
 * replayed on a new connection (the other side's nonce is new) nor reflected back (the
 * labels differ).
 */

export const NONCE_SIZE = 32

export function newNonce(): Buffer {
  return randomBytes(NONCE_SIZE)
}

function proof(
  secret: string,
  role: 'node' | 'distributor',
  serverNonce: Uint8Array,
  clientNonce: Uint8Array,
  node: string,
): Buffer {
  return createHmac('sha256', secret)
    .update(`job-reactor/${role}\0`)
    .update(serverNonce)
    .update(clientNonce)
    .update(node)
    .digest()
}

export function nodeProof(secret: string, serverNonce: Uint8Array, clientNonce: Uint8Array, node: string): Buffer {
  return proof(secret, 'node', serverNonce, clientNonce, node)
}

export function distributorProof(
  secret: string,
  serverNonce: Uint8Array,
  clientNonce: Uint8Array,
  node: string,
): Buffer {
  return proof(secret, 'distributor', serverNonce, clientNonce, node)
}

/** Constant-time comparison; a missing or wrongly sized proof is simply false. */
export function proofMatches(expected: Buffer, given: Uint8Array | undefined): boolean {
  if (given === undefined || given.length !== expected.length) return false
  return timingSafeEqual(expected, given)
}

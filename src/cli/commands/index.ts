/**
 * Registration list of the subcommands beyond status and enable-dual-write.
 * Each entry adds one subcommand to the program.
 */
import type { Command } from 'commander';
import { registerBackfill } from './backfill.js';
import { registerVerify } from './verify.js';
import { registerFlipRead } from './flip-read.js';
import { registerCleanup } from './cleanup.js';
import { registerRollback } from './rollback.js';
import { registerAccept } from './accept.js';
import { registerAcl } from './acl.js';
import { registerPreflight } from './preflight.js';
import { registerControl } from './control.js';

/** Adds one subcommand; `setExit` receives its exit code. */
export type RegisterCommand = (program: Command, setExit: (code: number) => void) => void;

/** Subcommands registered after the foundation ones. */
export const extraCommands: RegisterCommand[] = [
  registerBackfill,
  registerFlipRead,
  registerCleanup,
  registerRollback,
  registerVerify,
  registerAccept,
  registerAcl,
  registerPreflight,
  registerControl,
];

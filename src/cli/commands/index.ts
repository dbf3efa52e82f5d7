/**
 * Registration list of the subcommands beyond status and enable-dual-write.
 * Each entry adds one subcommand to the program.
 */
import type { Command } from 'commander';

/** Adds one subcommand; `setExit` receives its exit code. */
export type RegisterCommand = (program: Command, setExit: (code: number) => void) => void;

/** Subcommands registered after the foundation ones. */
export const extraCommands: RegisterCommand[] = [];

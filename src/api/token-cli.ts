/**
 * `orch-api token create --workspace <id> --scopes <list>`: makes a bearer
 * token and the token-table entry that admits it.
 *
 * The token is printed once, on stdout, and stored nowhere: the service keeps
 * only its sha256 (the entry). Losing it means creating another and removing
 * the old entry. Without a subcommand, bin/orch-api starts the service.
 */
import { randomBytes } from 'node:crypto';
import { Command, CommanderError, Option } from 'commander';
import { ExitCode } from '../core/errors.js';
import { isWorkspaceId } from '../core/ids.js';
import { hashToken, Scope, type TokenEntry } from './auth.js';

const KNOWN_SCOPES: readonly string[] = Object.values(Scope);

/** Writers of the CLI (tests capture them). */
export interface ApiCliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** A fresh token: 32 random bytes, base64url, with a prefix that secret scanners and humans recognise. */
export function newApiToken(): string {
  return `orch_${randomBytes(32).toString('base64url')}`;
}

/** A new token and its table entry; throws a message for bad input. */
export function createToken(workspace: string, scopesText: string): { token: string; entry: TokenEntry } {
  const shown = JSON.stringify(workspace.slice(0, 40));
  if (!isWorkspaceId(workspace)) {
    throw new UsageProblem(`invalid --workspace ${shown}: a workspace id is 1-32 characters of a-z, 0-9, "_" or "-", starting with a letter or digit`);
  }
  const scopes = [
    ...new Set(
      scopesText
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    ),
  ];
  if (scopes.length === 0) throw new UsageProblem(`--scopes needs at least one of ${KNOWN_SCOPES.join(', ')}`);
  const unknown = scopes.filter((s) => !KNOWN_SCOPES.includes(s));
  if (unknown.length > 0)
    throw new UsageProblem(`unknown scope(s) ${unknown.map((s) => JSON.stringify(s.slice(0, 40))).join(', ')}: use ${KNOWN_SCOPES.join(', ')}`);
  const token = newApiToken();
  return { token, entry: { sha256: hashToken(token), workspace_id: workspace, scopes } };
}

class UsageProblem extends Error {}

/** Runs `orch-api <args>`; resolves with the exit code (0, or 2 for a usage error). */
export async function runApiCli(
  argv: readonly string[],
  io: ApiCliIo = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) },
): Promise<number> {
  let code: number = ExitCode.Ok;
  const program = new Command('orch-api')
    .description('The reference HTTP API of the job store. Without a command it starts the service (configured by the environment; see docs/api.md).')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError();
  const token = program.command('token').description('Manage bearer tokens of the token table (ORCH_API_TOKENS_FILE)');
  token
    .command('create')
    .description('Create a bearer token: prints the token (once; it is not stored anywhere) and the token-table entry to add')
    .requiredOption('--workspace <id>', 'workspace the token is bound to (the API never takes the workspace from a request)')
    .addOption(new Option('--scopes <list>', `comma-separated scopes: ${KNOWN_SCOPES.join(', ')}`).makeOptionMandatory())
    .option('--json', 'print one JSON object {"token", "entry"} instead of two lines')
    .action((opts: { workspace: string; scopes: string; json?: boolean }) => {
      const { token: value, entry } = createToken(opts.workspace, opts.scopes);
      if (opts.json) {
        io.stdout(`${JSON.stringify({ token: value, entry })}\n`);
      } else {
        io.stdout(`${value}\n${JSON.stringify(entry)}\n`);
        io.stderr(
          'line 1: the token, shown once and stored nowhere: hand it to the client now.\n' +
            'line 2: its entry: add it to the JSON array in ORCH_API_TOKENS_FILE (or ORCH_API_TOKENS) and restart the service.\n',
        );
      }
    });
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof UsageProblem) {
      io.stderr(`orch-api: ${err.message}\n`);
      code = ExitCode.Usage;
    } else if (err instanceof CommanderError) {
      const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version';
      code = ok ? ExitCode.Ok : ExitCode.Usage;
    } else {
      throw err;
    }
  }
  return code;
}

/**
 * `orch-migrate acl`: prints the `ACL SETUSER` lines of three least-privilege
 * users (operator CLI, reference API, queue-core writer) for the key prefix.
 * It connects to nothing: an admin pipes the lines into redis-cli on every
 * node (ACL rules do not replicate). docs/connectivity.md explains each rule.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { z } from 'zod';
import { ExitCode, toOrchError } from '../../core/errors.js';
import { Keyspace } from '../../core/keys.js';
import { parseRedisUrl } from '../../core/redis.js';
import { ACL_PASSWORD_ENV, ACL_ROLES, ACL_USER_NAME, aclUsers, DEFAULT_ACL_USERS, type AclRole } from '../../ops/acl.js';
import { dflt, GlobalOptionsSchema, parseFlags, switchFlag, withDefault } from '../options.js';
import { Output } from '../output.js';
import { reportError } from '../runner.js';

const userFlag = (role: AclRole) =>
  withDefault(z.string().regex(ACL_USER_NAME, 'expected a user name of 1-64 letters, digits, ".", "_" or "-"'), DEFAULT_ACL_USERS[role]);

/** Options of `acl`. */
const AclFlagsSchema = z.object({
  operatorUser: userFlag('operator'),
  apiUser: userFlag('api'),
  writerUser: userFlag('writer'),
  aclfile: switchFlag,
});

/** Registers `acl`. */
export function registerAcl(program: Command, setExit: (code: number) => void): void {
  program
    .command('acl')
    .description('Print ACL SETUSER lines for least-privilege users: the operator CLI, the reference API and queue-core writers')
    .addOption(new Option('--operator-user <name>', `user of the orch-migrate CLI ${dflt(DEFAULT_ACL_USERS.operator)}`).env('ORCH_ACL_OPERATOR_USER'))
    .addOption(new Option('--api-user <name>', `user of the reference API ${dflt(DEFAULT_ACL_USERS.api)}`).env('ORCH_ACL_API_USER'))
    .addOption(new Option('--writer-user <name>', `user of queue-core writers and workers ${dflt(DEFAULT_ACL_USERS.writer)}`).env('ORCH_ACL_WRITER_USER'))
    .option('--aclfile', 'print ACL file lines (user <name> …) instead of ACL SETUSER commands')
    .addHelpText(
      'after',
      `
The rules cover the keys of --prefix only (its job families, the queue, the migration keys) and
the events channel; --cluster adds the cluster client's commands; a --redis-url with a database
other than 0 adds SELECT. Passwords come from ${ACL_ROLES.map((r) => ACL_PASSWORD_ENV[r]).join(', ')}
and are printed only as their SHA-256 (#<hex>); without one, a user cannot log in until a password is set.
ACL rules do not replicate: apply the lines on every node (masters, and replicas that may be promoted).
docs/connectivity.md explains every rule.

Examples:
  $ orch-migrate acl --prefix ai | redis-cli -h redis.internal --user admin --askpass
  $ ORCH_ACL_OPERATOR_PASSWORD=… orch-migrate acl --aclfile >> /etc/redis/users.acl`,
    )
    .action((_o, cmd: Command) => {
      const out = new Output(cmd.optsWithGlobals().json === true);
      try {
        const globals = parseFlags(GlobalOptionsSchema, cmd.optsWithGlobals());
        const o = parseFlags(AclFlagsSchema, cmd.opts());
        const keys = new Keyspace(globals.prefix);
        const passwords: Partial<Record<AclRole, string>> = {};
        for (const role of ACL_ROLES) {
          const pw = process.env[ACL_PASSWORD_ENV[role]];
          if (pw !== undefined && pw !== '') passwords[role] = pw;
        }
        const users = aclUsers({
          keys,
          cluster: globals.cluster,
          db: parseRedisUrl(globals.redisUrl).db,
          users: { operator: o.operatorUser, api: o.apiUser, writer: o.writerUser },
          passwords,
        });
        // Explanations go to stderr, so stdout pipes straight into redis-cli.
        out.line(
          `# least-privilege users for key prefix "${keys.prefix}"${globals.cluster ? ' (Redis Cluster)' : ''}; Redis 7.0+; apply on every node (ACL rules do not replicate)`,
        );
        for (const u of users) {
          out.line(`#  ${u.user}: ${u.description}`);
          if (!u.passwordSet)
            out.line(`#    no password: it cannot log in until one is set (ACL SETUSER ${u.user} ">…"), or set ${ACL_PASSWORD_ENV[u.role]} and rerun`);
        }
        out.line('# every rule is explained in docs/connectivity.md');
        for (const u of users) out.print(o.aclfile ? u.aclfileLine : u.line);
        out.result({
          prefix: keys.prefix,
          cluster: globals.cluster,
          users: users.map((u) => ({
            role: u.role,
            user: u.user,
            description: u.description,
            passwordSet: u.passwordSet,
            line: u.line,
            aclfileLine: u.aclfileLine,
            rules: u.rules,
          })),
        });
        setExit(ExitCode.Ok);
      } catch (err) {
        const e = toOrchError(err);
        reportError(e, out);
        setExit(e.exitCode);
      }
    });
}

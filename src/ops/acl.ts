/**
 * Least-privilege ACL users (Redis 7.0+) for the three kinds of process that
 * touch the job store: the operator's CLI, the reference API, and queue-core
 * writers. Each gets exactly the commands its code runs (the Lua scripts'
 * inner commands included: Redis checks every redis.call against the user),
 * and only the keys of its prefix's families plus the events channel.
 *
 * Every rule carries the reason it exists; docs/connectivity.md explains the
 * lines in prose and a unit test keeps the two in step. The integration test
 * (test/integration/conn-acl.test.ts) creates these users on real servers and
 * runs the whole journey as them.
 *
 * One subtlety shapes the API and writer lines: EVAL/EVALSHA require read AND
 * write access to every key a script declares (Redis cannot tell how a script
 * uses them). The write script declares the state record and the history
 * stream, which these users may only read. So their root permissions hold the
 * state record read-only (`%R~`), and a selector grants EVAL/EVALSHA, and
 * nothing else, on the keys the scripts declare. Inside the script each call
 * is checked again: an HSET on the state record matches neither the root
 * (read-only there) nor the selector (no HSET), so it is refused.
 */
import { createHash } from 'node:crypto';
import type { Keyspace } from '../core/keys.js';
import { scriptsBySha } from '../core/redis.js';

/** The three users. */
export const ACL_ROLES = ['operator', 'api', 'writer'] as const;
export type AclRole = (typeof ACL_ROLES)[number];

/** Default user names. */
export const DEFAULT_ACL_USERS: Record<AclRole, string> = { operator: 'orch-migrate', api: 'orch-api', writer: 'orch-writer' };

/** Environment variables whose value becomes the user's password (printed only as its SHA-256). */
export const ACL_PASSWORD_ENV: Record<AclRole, string> = {
  operator: 'ORCH_ACL_OPERATOR_PASSWORD',
  api: 'ORCH_ACL_API_PASSWORD',
  writer: 'ORCH_ACL_WRITER_PASSWORD',
};

/** What each user is for. */
export const ACL_ROLE_DESCRIPTIONS: Record<AclRole, string> = {
  operator: 'the orch-migrate CLI: every subcommand (status, transitions, backfill, verify, cleanup, rollback, accept)',
  api: 'the reference API (orch-api): list and read jobs on both read paths, create and update them through the queue core',
  writer: 'a queue-core writer or worker: enqueue, update_status, dequeue (no listing)',
};

/** A user name as Redis prints it back and a shell passes it unquoted (full match). */
export const ACL_USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** One ACL rule with the reason it exists. */
export interface AclRule {
  rule: string;
  why: string;
}

/** One user: its rules and the line that creates it. */
export interface AclUser {
  role: AclRole;
  user: string;
  description: string;
  /** Whether the line sets a password (`#<sha256>`); without one the user cannot log in until one is added. */
  passwordSet: boolean;
  rules: AclRule[];
  /** `ACL SETUSER <user> …`, ready for redis-cli (the selector is quoted). */
  line: string;
  /** The same as an ACL file line (`user <user> …`). */
  aclfileLine: string;
}

/** Options of {@link aclUsers}. */
export interface AclOptions {
  keys: Keyspace;
  /** Add the commands the cluster client sends (slot map, redirects). */
  cluster?: boolean;
  /** The URL's database: other than 0 needs SELECT. */
  db?: number;
  users?: Partial<Record<AclRole, string>>;
  /** Passwords, hashed here and never kept. */
  passwords?: Partial<Record<AclRole, string>>;
}

type Cmd = readonly [command: string, why: string];

/** Every connection. */
const CONNECTION: readonly Cmd[] = [
  ['ping', 'connection check at start (and the API readiness probe)'],
  [
    'info',
    "the client's ready check (waits out LOADING after a restart) and Sentinel's role check; the CLI also reads each master's run_id (checkpoints) and a replica's lag",
  ],
  ['client|setname', 'names each connection in CLIENT LIST (orch-migrate:<command>, orch-api, queue-core)'],
];

/** The cluster client. */
const CLUSTER: readonly Cmd[] = [
  ['cluster|slots', "the cluster client's slot map"],
  ['cluster|info', "the cluster client's ready check (waits for cluster_state:ok)"],
  ['asking', 'follows ASK redirects while slots migrate'],
  ['readwrite', 'the cluster client resets a node to read-write after a failover changes its role'],
];

/** Only the operator's preflight reads these on a cluster. */
const OPERATOR_CLUSTER: readonly Cmd[] = [['cluster|nodes', 'preflight checks that no master is marked failed (read only)']];

/** Reading the state record the way every process does (src/core/state.ts). */
const STATE_READ: readonly Cmd[] = [
  ['hgetall', 'reads the state record, checkpoints, writer heartbeats and records'],
  ['exists', 'checks for migration traces (checkpoints) when the state record looks pre-migration; create-if-absent checks'],
  ['xrange', 'checks the history stream for a past transition when the state record is missing (eviction is corruption, not "legacy")'],
];

/** The write path of the queue core: direct commands and the inner commands of write-job.lua, writer-heartbeat.lua and the cluster scripts. */
const WRITE_PATH: readonly Cmd[] = [
  ['evalsha', 'runs the write scripts (write-job.lua: primary, mirror, index and queue in one atomic step; writer-heartbeat.lua)'],
  ['eval', 'first call of a script on a server that has not cached it (ioredis falls back from EVALSHA on NOSCRIPT); no SCRIPT LOAD needed'],
  ['type', 'inside the scripts: refuses to overwrite a key of another type'],
  ['hget', 'inside the scripts and dequeue: reads one field (phase, rev, workspace_id)'],
  ['hmget', 'inside write-job.lua: reads the state record phase and epoch'],
  ['hset', 'inside the scripts: writes the record fields and the heartbeat'],
  ['hincrby', 'inside the scripts: rev + 1 on every write'],
  ['del', 'inside write-job.lua: replaces the mirror hash whole (never a partial record)'],
  ['pexpire', 'inside the scripts: a job created with a TTL'],
  ['pexpireat', "inside the scripts: the mirror gets the primary's exact expiry"],
  ['pexpiretime', 'inside the scripts: returns the expiry with the snapshot'],
  ['zadd', 'the v2 index entry (inside write-job.lua, or separately on a cluster)'],
  ['zscore', 'inside write-job.lua: is the index entry there already'],
  ['rpush', 'pushes the pending reference of a new job onto the queue'],
  ['time', "inside writer-heartbeat.lua: the heartbeat is stamped with the server's clock"],
  ['hdel', "removes this process' writer entry when it stops"],
];

const OPERATOR_COMMANDS: readonly Cmd[] = [
  ['scan', 'walks each layout with SCAN MATCH (backfill, verify, cleanup, rollback, status --exact); never KEYS'],
  ['dbsize', 'key count estimates for status and progress ETAs (SCAN already sees every key name in the database, so this reveals nothing more)'],
  ['randomkey', 'samples key names for the estimate (same note as dbsize)'],
  ['type', 'tells hashes from keys of another type (reported, never touched)'],
  ['exists', 'create-if-absent checks, migration traces'],
  ['hgetall', 'reads records, the state record, checkpoints, findings, writer heartbeats'],
  ['hget', 'reads one field (workspace_id, rev, lock_fence)'],
  ['hmget', 'reads a few fields of a record (rev, workspace_id, created_at)'],
  ['hset', 'writes checkpoints, findings, accepted keys and state fields (fenced by the lock inside a script)'],
  ['hdel', 'removes accepted keys and dead writer entries'],
  ['hlen', 'counts findings and accepted keys'],
  ['hkeys', 'lists accepted keys'],
  ['hscan', 'lists findings in bounded pages'],
  ['hincrby', 'the lock fence counter and finding counters'],
  [
    'get',
    'reads a lock an older orch-migrate took (a string; the lock is a hash of per-holder leases, taken and renewed in lock-acquire.lua and lock-renew.lua)',
  ],
  ['pttl', 'how long the lock key lives (status, the refusal message)'],
  ['pexpire', 'the lock key expires with its last live holder (lock-acquire.lua, lock-renew.lua)'],
  ['del', 'clears checkpoints; inside repair-cas.lua deletes an orphan'],
  ['unlink', 'cleanup deletes legacy keys, only where v2 holds the record (inside cleanup-batch.lua)'],
  ['copy', 'backfill copies a record with its TTL, create-if-absent (inside backfill-batch.lua)'],
  ['dump', 'compares records byte-exactly (verify-batch.lua, backfill-batch.lua) and copies across slots on a cluster'],
  ['restore', 'the cluster copy: RESTORE ABSTTL without REPLACE (COPY cannot cross slots)'],
  ['pexpireat', 'sets the exact expiry on a repaired or copied record'],
  ['pexpiretime', 'compares and copies expiries'],
  ['zadd', 'writes v2 index entries'],
  ['zscore', 'checks an index entry'],
  ['zmscore', 'verify reads the index entries of a batch, one call per index (inside verify-batch.lua)'],
  ['zrem', 'verify --repair removes a dangling index entry'],
  ['zscan', 'verify walks each workspace index'],
  ['zrange', 'verify reads a small workspace index whole, in one atomic command'],
  ['llen', 'cleanup counts pending queue references'],
  ['lrange', 'cleanup reads pending references before converting them (queue-convert.lua)'],
  ['lset', 'cleanup rewrites bare references to <workspace>:<job> in place (queue-convert.lua)'],
  ['xadd', 'appends to the history stream (audit trail)'],
  ['xrange', 'reads the history stream (incident restore, migration traces)'],
  ['xrevrange', 'status shows the last history entries'],
  ['time', "the server's clock for changed_at and settle windows"],
  ['publish', 'announces a transition on the events channel (inside transition.lua)'],
  ['evalsha', 'runs the batch and transition scripts'],
  ['eval', 'first call of a script on a server that has not cached it (ioredis falls back from EVALSHA on NOSCRIPT)'],
  ['multi', 'writes the run heartbeat (status shows the run in flight) in one transaction'],
  ['exec', 'ends that transaction'],
  ['memory|usage', 'preflight samples legacy record sizes for the memory projection'],
  ['object|encoding', "preflight reads a sampled record's encoding (listpack or hashtable) for the projection"],
  ['memory|malloc-stats', "preflight reads the allocator's size classes for the projection (optional: without it a default is assumed)"],
  ['config|get', 'preflight reads maxmemory-policy, maxmemory, the listpack limits and client-output-buffer-limit (read only; the tool never runs CONFIG SET)'],
];

const API_COMMANDS: readonly Cmd[] = [
  ...STATE_READ,
  ['subscribe', 'the phase watcher follows transitions on the events channel'],
  ['scan', 'the legacy read path lists a workspace by SCAN MATCH (until reads flip to v2)'],
  ['zrange', 'the v2 read path pages through the workspace index'],
  ['zrank', 'resumes a v2 page after the cursor'],
  ...WRITE_PATH,
];

const WRITER_COMMANDS: readonly Cmd[] = [
  ...STATE_READ,
  ['subscribe', 'the phase watcher follows transitions on the events channel'],
  ['lpop', 'dequeue takes the next pending reference'],
  ...WRITE_PATH,
];

/** Unique by rule, first reason kept (two tables may list one command). */
function dedupe(rules: AclRule[]): AclRule[] {
  const seen = new Set<string>();
  return rules.filter((r) => (seen.has(r.rule) ? false : (seen.add(r.rule), true)));
}

function commandRules(cmds: readonly Cmd[]): AclRule[] {
  return cmds.map(([c, why]) => ({ rule: `+${c}`, why }));
}

/** The key rules of each role, from the Keyspace (the one place that spells key names). */
function keyRules(role: AclRole, k: Keyspace): AclRule[] {
  const data: AclRule[] = [
    { rule: `~${k.legacyPattern}`, why: 'legacy records' },
    { rule: `~${k.v2Pattern()}`, why: 'v2 records' },
    { rule: `~${k.indexPattern}`, why: 'v2 workspace indexes' },
    { rule: `~${k.queue}`, why: 'the pending queue' },
  ];
  if (role === 'operator') {
    return [
      ...data,
      { rule: `~${k.state}`, why: 'the migration state record' },
      { rule: `~${k.migrationPattern}`, why: 'history stream, lock, checkpoints, findings, accepted keys, writer heartbeats' },
    ];
  }
  return [
    ...data,
    { rule: `%R~${k.state}`, why: 'reads the phase; may not change it' },
    { rule: `%R~${k.workspacePhases}`, why: "reads the canary workspaces' phases (overrides); may not change them" },
    { rule: `%R~${k.history}`, why: 'reads the history only to tell a missing state record from eviction' },
    { rule: `%R~${k.checkpointPattern}`, why: 'checks that checkpoints exist for the same reason (the API also shows their progress in /metrics)' },
    { rule: `~${k.writers}`, why: 'its own writer heartbeat (transitions wait for its acknowledgement)' },
  ];
}

/** The selector of the API and writer users: EVAL/EVALSHA on exactly the keys the write scripts declare. */
function scriptSelector(k: Keyspace): AclRule {
  const keys = [k.legacyPattern, k.v2Pattern(), k.indexPattern, k.queue, k.state, k.history, k.workspacePhases].map((x) => `~${x}`).join(' ');
  return {
    rule: `"(${keys} +evalsha +eval)"`,
    why: 'EVALSHA/EVAL need read-write access to every key a script declares; write-job.lua declares the state record, the history and the canary overrides, which it only reads. The selector allows the script call on them and nothing else; inside the script, a write to them is still refused',
  };
}

/** The rules of one role, in the order they are written on the line. */
export function roleRules(
  role: AclRole,
  opts: Pick<AclOptions, 'keys' | 'cluster' | 'db'>,
): { keys: AclRule[]; channels: AclRule[]; commands: AclRule[]; selectors: AclRule[] } {
  const cmds = role === 'operator' ? OPERATOR_COMMANDS : role === 'api' ? API_COMMANDS : WRITER_COMMANDS;
  const commands = dedupe([
    ...commandRules(CONNECTION),
    ...((opts.db ?? 0) !== 0 ? commandRules([['select', `the URL names database ${opts.db}`]]) : []),
    ...(opts.cluster ? commandRules(CLUSTER) : []),
    ...(opts.cluster && role === 'operator' ? commandRules(OPERATOR_CLUSTER) : []),
    ...commandRules(cmds),
  ]);
  const channel = opts.keys.events;
  return {
    keys: keyRules(role, opts.keys),
    channels: [{ rule: `&${channel}`, why: role === 'operator' ? 'transitions are announced here' : 'subscribes to transitions to refresh the phase at once' }],
    commands,
    selectors: role === 'operator' ? [] : [scriptSelector(opts.keys)],
  };
}

/** The users, their rules, and the lines that create them. */
export function aclUsers(opts: AclOptions): AclUser[] {
  return ACL_ROLES.map((role) => {
    const user = opts.users?.[role] ?? DEFAULT_ACL_USERS[role];
    const password = opts.passwords?.[role];
    const r = roleRules(role, opts);
    const head: AclRule[] = [
      { rule: 'reset', why: 'starts from nothing: no password, no keys, no channels, no commands (-@all), so rerunning the line replaces the user exactly' },
      { rule: 'on', why: 'enables the user' },
      ...(password
        ? [
            {
              rule: `#${createHash('sha256').update(password, 'utf8').digest('hex')}`,
              why: 'the password, as its SHA-256 (the password itself is never printed)',
            },
          ]
        : []),
      { rule: 'resetchannels', why: 'no channel but the one below, even where acl-pubsub-default is allchannels' },
    ];
    const rules = [...head, ...r.keys, ...r.channels, ...r.commands, ...r.selectors];
    const text = rules.map((x) => x.rule).join(' ');
    return {
      role,
      user,
      description: ACL_ROLE_DESCRIPTIONS[role],
      passwordSet: !!password,
      rules,
      line: `ACL SETUSER ${user} ${text}`,
      aclfileLine: `user ${user} ${text}`,
    };
  });
}

/** Every command any user is granted, with the scripts' inner commands checked against the tables (used by the unit test). */
export function grantedCommands(role: AclRole, opts: Pick<AclOptions, 'keys' | 'cluster' | 'db'>): string[] {
  return roleRules(role, opts).commands.map((c) => c.rule.slice(1));
}

/** The scripts and the commands they call (from the Lua sources), for the docs and the tests. */
export function scriptCommands(): Array<{ file: string; commands: string[] }> {
  return [...scriptsBySha().values()].sort((a, b) => a.file.localeCompare(b.file));
}

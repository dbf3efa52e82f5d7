/**
 * Key layouts. This is the only module that spells Redis key strings (docs/design.md "Key layout").
 *
 * The legacy pattern `<p>:jobs:*` and the v2 pattern `<p>:job:*` never overlap,
 * and neither matches the index or the migration keys; the unit tests prove it.
 */
import { ConfigError } from './errors.js';
import { assertJobId, assertWorkspaceId, isJobId, isWorkspaceId } from './ids.js';

const PREFIX_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** Identity of a v2 record. */
export interface V2KeyParts {
  workspaceId: string;
  jobId: string;
}

/** All key names for one prefix (default `ai`). */
export class Keyspace {
  readonly prefix: string;

  constructor(prefix = 'ai') {
    if (!PREFIX_PATTERN.test(prefix)) {
      throw new ConfigError(`Invalid key prefix "${prefix}"`, {
        suggestion: 'Use letters, digits, "_" or "-" (no colon or glob characters), e.g. --prefix ai',
      });
    }
    this.prefix = prefix;
  }

  /** `<p>:jobs:<job_id>`: the legacy record. */
  legacyJob(jobId: string): string {
    assertJobId(jobId);
    return `${this.prefix}:jobs:${jobId}`;
  }

  /** `<p>:job:<workspace_id>:<job_id>`: the v2 record. */
  v2Job(workspaceId: string, jobId: string): string {
    assertWorkspaceId(workspaceId);
    assertJobId(jobId);
    return `${this.prefix}:job:${workspaceId}:${jobId}`;
  }

  /** `<p>:job-index:<workspace_id>`: sorted set, member job_id, score created_at ms. */
  index(workspaceId: string): string {
    assertWorkspaceId(workspaceId);
    return `${this.prefix}:job-index:${workspaceId}`;
  }

  /** `<p>:jobs:`, `<p>:job:`, `<p>:job-index:`: the heads a script appends ids to (verify-batch.lua builds a record's v2 key and index from its fields). */
  get heads(): { legacy: string; v2: string; index: string } {
    return { legacy: `${this.prefix}:jobs:`, v2: `${this.prefix}:job:`, index: `${this.prefix}:job-index:` };
  }

  /** SCAN MATCH pattern for every workspace index. */
  get indexPattern(): string {
    return `${this.prefix}:job-index:*`;
  }

  /** The pending list of job references (docs/design.md "The pending list"). */
  get queue(): string {
    return `${this.prefix}:queue`;
  }

  /** The migration state record (docs/design.md "The state record is never guessed"). */
  get state(): string {
    return `${this.prefix}:migration:jobs`;
  }

  /** Audit trail stream. */
  get history(): string {
    return `${this.prefix}:migration:jobs:history`;
  }

  /** Operator lease lock. */
  get lock(): string {
    return `${this.prefix}:migration:jobs:lock`;
  }

  /** Pub/sub channel announcing transitions. */
  get events(): string {
    return `${this.prefix}:migration:jobs:events`;
  }

  /**
   * Registered writer processes (hash: writer id → JSON heartbeat with the
   * epoch the writer acts on). Transitions wait for every live writer to
   * acknowledge the new epoch (src/core/writers.ts).
   */
  get writers(): string {
    return `${this.prefix}:migration:jobs:writers`;
  }

  /**
   * Per-workspace phases (canaries): hash `<workspace_id>` → phase, for the
   * workspaces ahead of the global phase (src/core/phase.ts effectivePhase).
   */
  get workspacePhases(): string {
    return `${this.prefix}:migration:jobs:workspaces`;
  }

  /** What the gates need per canary workspace: hash `<workspace_id>` → JSON (src/core/workspaces.ts). */
  get workspaceState(): string {
    return `${this.prefix}:migration:jobs:workspaces:state`;
  }

  /**
   * Live control of running operations (hash: paused, rate, who and when),
   * written by `orch-migrate control` and polled by every run at least once a
   * second, wherever it runs (src/ops/control.ts).
   */
  get control(): string {
    return `${this.prefix}:migration:jobs:control`;
  }

  /**
   * The runs in flight (hash: run id → JSON heartbeat with progress, rate and
   * throttle state; the key expires a few heartbeats after the last run
   * stops writing it). `status` shows them (src/ops/run-heartbeat.ts).
   */
  get run(): string {
    return `${this.prefix}:migration:jobs:run`;
  }

  /** Legacy keys accepted as known-unmigratable (hash: key → JSON {reason, by, at}). */
  get accepted(): string {
    return `${this.prefix}:migration:jobs:accepted`;
  }

  /**
   * Findings of a resumable operation (hash: key → JSON {reason, detail}):
   * backfill's unmigratable records, cleanup's kept keys. Counts and listings
   * both come from it, so they agree across resumed runs.
   */
  findings(op: string): string {
    return `${this.checkpoint(op)}:findings`;
  }

  /** Resumable scan positions of one operation. */
  checkpoint(op: string): string {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(op)) throw new ConfigError(`Invalid checkpoint name "${op}"`);
    return `${this.prefix}:migration:jobs:checkpoint:${op}`;
  }

  /** Pattern of every migration key beside the state record itself: history, lock, checkpoints, findings, writers, accepted (ACL rules). */
  get migrationPattern(): string {
    return `${this.state}:*`;
  }

  /** Pattern of every checkpoint and its findings (ACL rules). */
  get checkpointPattern(): string {
    return `${this.state}:checkpoint:*`;
  }

  /**
   * The family pattern a key of any prefix belongs to (`<p>:jobs:*`, `<p>:job:*`,
   * `<p>:job-index:*`, `<p>:migration:jobs:*`), the key itself for the queue and
   * the state record, or null for a key that is not the job store's. Used to
   * name the ACL rule that covers a refused key without knowing the prefix.
   */
  static familyPattern(key: string): string | null {
    const m = /^([A-Za-z0-9][A-Za-z0-9_-]{0,63}):(.*)$/.exec(key);
    if (!m) return null;
    const ks = new Keyspace(m[1]);
    const layout = ks.layoutOf(key);
    if (layout === 'legacy') return ks.legacyPattern;
    if (layout === 'v2') return ks.v2Pattern();
    if (layout === 'index') return ks.indexPattern;
    if (key === ks.queue || key === ks.state) return key;
    if (key.startsWith(`${ks.state}:`)) return ks.migrationPattern;
    return null;
  }

  /** SCAN MATCH pattern of the legacy layout. */
  get legacyPattern(): string {
    return `${this.prefix}:jobs:*`;
  }

  /** SCAN MATCH pattern of the v2 layout, optionally one workspace only. */
  v2Pattern(workspaceId?: string): string {
    if (workspaceId === undefined) return `${this.prefix}:job:*`;
    assertWorkspaceId(workspaceId);
    return `${this.prefix}:job:${workspaceId}:*`;
  }

  /**
   * SCAN MATCH pattern of every job key of both layouts and the indexes
   * (`<p>:job*`), so one walk of the keyspace sees them all (verify). Use
   * {@link layoutOf} to tell them apart; other keys it matches are not ours.
   */
  get jobFamilyPattern(): string {
    return `${this.prefix}:job*`;
  }

  /** Which family a key belongs to by its name alone (not validated), or null. */
  layoutOf(key: string): 'legacy' | 'v2' | 'index' | null {
    if (key.startsWith(`${this.prefix}:jobs:`)) return 'legacy';
    if (key.startsWith(`${this.prefix}:job:`)) return 'v2';
    if (key.startsWith(`${this.prefix}:job-index:`)) return 'index';
    return null;
  }

  /** The raw suffix after `<p>:jobs:`, or null when the key is not in the legacy layout. */
  legacySuffix(key: string): string | null {
    const head = `${this.prefix}:jobs:`;
    return key.startsWith(head) ? key.slice(head.length) : null;
  }

  /** The job id of a legacy key, or null when the key is not a valid legacy key. */
  parseLegacy(key: string): string | null {
    const suffix = this.legacySuffix(key);
    return suffix !== null && isJobId(suffix) ? suffix : null;
  }

  /** Workspace and job of a v2 key, or null when the key is not a valid v2 key. */
  parseV2(key: string): V2KeyParts | null {
    const head = `${this.prefix}:job:`;
    if (!key.startsWith(head)) return null;
    const rest = key.slice(head.length);
    const colon = rest.indexOf(':');
    if (colon < 0) return null;
    const workspaceId = rest.slice(0, colon);
    const jobId = rest.slice(colon + 1);
    return isWorkspaceId(workspaceId) && isJobId(jobId) ? { workspaceId, jobId } : null;
  }

  /** Workspace of an index key, or null. */
  parseIndex(key: string): string | null {
    const head = `${this.prefix}:job-index:`;
    if (!key.startsWith(head)) return null;
    const ws = key.slice(head.length);
    return isWorkspaceId(ws) ? ws : null;
  }
}

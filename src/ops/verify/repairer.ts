/**
 * verify --repair: compare-and-swap repairs from the primary. What it never
 * does: overwrite or delete a record that is the primary copy of its own
 * workspace's job. Where two workspaces hold one job id (an id conflict)
 * nothing is repaired; an orphan mirror is deleted only when the primary
 * layout proves the job absent (the primary key is absent and that layout is
 * marked complete).
 *
 * Pairs are repaired first, then dangling index entries, each removal atomic
 * with the check that its record is still absent: a pair repair that restores
 * a record (and its entry) is never undone by the removal of the same entry.
 */
import pLimit from 'p-limit';
import { isJobId } from '../../core/ids.js';
import { createdAtScore, JobField } from '../../core/job.js';
import { Layout, routeFor } from '../../core/phase.js';
import { readRecord } from '../../core/protocol.js';
import { RepairCasReply } from '../../core/script-replies.js';
import { callScript, ScriptName } from '../../core/scripts.js';
import { phaseOf, type MigrationState } from '../../core/state.js';
import { assertLockHeld, leaseDeadline, lockArgs, type OpContext } from '../context.js';
import { fieldText, MismatchKind, RECORD_KINDS, viewOf } from '../record-compare.js';
import type { DanglingSuspect, PairSuspect, SuspectSet } from './suspects.js';

export class Repairer {
  constructor(
    private readonly ctx: OpContext,
    private readonly state: MigrationState,
    private readonly cluster: boolean,
  ) {}

  /** repair-cas.lua on the mirror: the lock is checked inside on one node, before the call on a cluster. */
  private async cas(mirrorKey: string, indexKey: string | null, args: Array<string | number | Buffer>): Promise<number> {
    const lock = lockArgs(this.ctx);
    if (this.cluster) {
      await assertLockHeld(this.ctx);
      return callScript<number>(this.ctx.client, ScriptName.RepairCasOneKey, [mirrorKey, 'd', leaseDeadline(this.ctx), ...args]);
    }
    const roles = `${indexKey ? 'i' : ''}l`;
    const extra = indexKey ? [indexKey, lock.key] : [lock.key];
    return callScript<number>(this.ctx.client, ScriptName.RepairCas, [1 + extra.length, mirrorKey, ...extra, roles, lock.value, ...args]);
  }

  /** Fixes one pair: the mirror becomes the primary's snapshot (or goes, when the primary proves the job absent); the index follows. */
  async pair(s: PairSuspect): Promise<boolean> {
    const keys = this.ctx.keys;
    if (s.issues.some((i) => i.kind === MismatchKind.IdConflict)) return false;
    const legacyKey = keys.legacyJob(s.jobId);
    const v2Key = keys.v2Job(s.ws, s.jobId);
    const indexKey = keys.index(s.ws);
    const recordIssue = s.issues.some((i) => RECORD_KINDS.has(i.kind));
    const indexIssue = s.issues.some((i) => i.kind === MismatchKind.IndexMissing || i.kind === MismatchKind.IndexScore);
    // The pair's primary is that of its workspace's phase (a canary's may be ahead); new-only has no mirror.
    const phase = phaseOf(this.state, s.ws);
    if (routeFor(phase).mirror === null) return false;
    const primary = routeFor(phase).primary;
    const mirrorIsV2 = primary === Layout.Legacy;
    const primaryKey = mirrorIsV2 ? legacyKey : v2Key;
    const mirrorKey = mirrorIsV2 ? v2Key : legacyKey;
    const seen = mirrorIsV2 ? s.v2 : s.legacy;
    let ok = true;
    if (recordIssue) {
      if (seen.type !== 'hash' && seen.type !== 'none') return false;
      // A legacy mirror naming another workspace is that tenant's job: never overwritten.
      if (!mirrorIsV2 && seen.type === 'hash' && seen.owner !== s.ws) return false;
      const raw = await readRecord(this.ctx.client, primaryKey);
      const primaryView = viewOf(raw);
      if (primaryView.type !== 'hash' && primaryView.type !== 'none') return false;
      // A legacy primary naming another workspace does not prove this job absent: an id conflict.
      if (primaryView.type === 'hash' && fieldText(primaryView, JobField.WorkspaceId) !== s.ws) return false;
      const inlineIndex = mirrorIsV2 && !this.cluster ? indexKey : null;
      const expected = [seen.type === 'none' ? 'absent' : 'hash', seen.rev, seen.digest];
      let code: number;
      if (primaryView.type === 'none') {
        if (seen.type === 'none') return true;
        const complete = primary === Layout.Legacy ? this.state.legacyComplete : this.state.v2Complete;
        if (!complete) return false;
        code = await this.cas(mirrorKey, inlineIndex, ['delete', ...expected, 0, 0, s.jobId, '']);
        if (code === RepairCasReply.done && mirrorIsV2 && this.cluster) await this.ctx.client.zrem(indexKey, s.jobId);
      } else {
        const score = createdAtScore(primaryView.fields.get(JobField.CreatedAt));
        code = await this.cas(mirrorKey, inlineIndex, ['replace', ...expected, raw.pexpireAt > 0 ? raw.pexpireAt : 0, score, s.jobId, s.ws, ...raw.fields]);
        if (code === RepairCasReply.done && mirrorIsV2 && this.cluster) await this.ctx.client.zadd(indexKey, score, s.jobId);
      }
      ok = code === RepairCasReply.done;
    }
    if (indexIssue && ok) {
      if (this.cluster) await assertLockHeld(this.ctx);
      // The index follows the v2 record as it is now (created_at never changes).
      const v2 = viewOf(await readRecord(this.ctx.client, v2Key));
      if (v2.type === 'hash') await this.ctx.client.zadd(indexKey, createdAtScore(v2.fields.get(JobField.CreatedAt)), s.jobId);
    }
    return ok;
  }

  /** Removes an index entry whose v2 record is (still) gone. */
  async dangling(s: DanglingSuspect): Promise<boolean> {
    const { keys, client } = this.ctx;
    const indexKey = keys.index(s.ws);
    // A member that is not a job id names no record: nothing can bring it back.
    if (!isJobId(s.member)) {
      await assertLockHeld(this.ctx);
      await client.zrem(indexKey, s.member);
      return true;
    }
    const v2Key = keys.v2Job(s.ws, s.member);
    if (!this.cluster) {
      const lock = lockArgs(this.ctx);
      // Either code ends the suspect: the entry went (removed), or the record exists again (kept).
      await callScript<number>(client, ScriptName.IndexDropDangling, [indexKey, v2Key, lock.key, s.member, lock.value]);
      return true;
    }
    // Cluster: index and record hash to different slots. Remove, then look again; a
    // record written meanwhile gets its entry back from its own created_at.
    await assertLockHeld(this.ctx);
    if ((await client.exists(v2Key)) === 1) return true;
    await client.zrem(indexKey, s.member);
    const again = viewOf(await readRecord(client, v2Key));
    if (again.type === 'hash') await client.zadd(indexKey, createdAtScore(again.fields.get(JobField.CreatedAt)), s.member);
    return true;
  }

  /**
   * Repairs every re-checkable suspect: pairs first, then dangling entries.
   * Marks each `repaired` (whether the swap was made); returns how many were.
   */
  async run(suspects: SuspectSet, concurrency: number): Promise<{ repaired: number; ids: string[] }> {
    const limit = pLimit(Math.max(8, concurrency * 8));
    const ids = suspects.recheckable();
    let repaired = 0;
    for (const kind of ['pair', 'dangling'] as const) {
      await limit.map(
        ids.filter((id) => suspects.get(id)?.t === kind),
        async (id) => {
          const s = suspects.get(id);
          if (!s || s.t === 'key') return;
          const ok = s.t === 'pair' ? await this.pair(s) : await this.dangling(s);
          s.repaired = ok;
          if (ok) repaired++;
        },
      );
    }
    return {
      repaired,
      ids: ids.filter((id) => {
        const s = suspects.get(id);
        return s !== undefined && s.t !== 'key' && s.repaired === true;
      }),
    };
  }
}

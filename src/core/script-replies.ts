/**
 * What the Lua scripts (src/core/lua/, registered in src/core/scripts.ts)
 * answer: one const table per script for its reply codes, as the script's
 * header documents them under "Returns", and one table for the first word of
 * every error reply a script gives. Callers compare against these names, never
 * against literals, so a code means one thing everywhere.
 * test/unit/script-replies.test.ts checks each table against its script's
 * header, and every `redis.error_reply` against {@link ScriptError}.
 */
import { isReplyError, replyMessage } from './errors.js';

/** apply-if-newer.lua: the mirror write of the protocol. */
export const ApplyIfNewerReply = { applied: 1, skipped: 0, wrongType: -1, badRev: -2, ownerConflict: -3 } as const;

/** backfill-batch.lua: one code per item. */
export const BackfillBatchReply = {
  copied: 1,
  replaced: 2,
  skipped: 0,
  targetWrongType: -1,
  targetBadRev: -2,
  vanished: -3,
  badRev: -4,
  idConflict: -5,
} as const;

/** cleanup-batch.lua: one code per pair. */
export const CleanupBatchReply = {
  unlinked: 1,
  v2Older: 0,
  foreignType: -1,
  invalidRev: -2,
  changed: -3,
  gone: -4,
  v2Missing: -6,
  v2ForeignType: -7,
  v2InvalidRev: -8,
  v2WorkspaceMismatch: -9,
} as const;

/** cleanup-unlink.lua (the cluster path): the legacy-side codes of cleanup-batch.lua, with the same values. */
export const CleanupUnlinkReply = {
  unlinked: CleanupBatchReply.unlinked,
  v2Older: CleanupBatchReply.v2Older,
  foreignType: CleanupBatchReply.foreignType,
  invalidRev: CleanupBatchReply.invalidRev,
  changed: CleanupBatchReply.changed,
  gone: CleanupBatchReply.gone,
} as const;

/** repair-cas.lua: verify --repair's compare-and-swap (and the cluster backfill's replace). */
export const RepairCasReply = { done: 1, changed: 0, wrongType: -1, idConflict: -2 } as const;

/** backfill-create.lua: the cluster backfill's fenced create-if-absent. */
export const BackfillCreateReply = { created: 1, exists: 0 } as const;

/** xslot-create.lua: backfill-create.lua's codes for a batch of targets on one master, and a target it does not serve. */
export const XslotCreateReply = { created: 1, exists: 0, notHere: -1 } as const;

/** xslot-index-add.lua: per index the members added (0 or more), or this. */
export const XslotIndexAddReply = { notHere: -1 } as const;

/** xslot-read.lua and xslot-probe.lua: the first byte of a key's reply when this master does not serve the key. */
export const XslotReply = { notHere: 0x78 /* x */ } as const;

/** mirror-create.lua: create-if-absent. */
export const MirrorCreateReply = { created: 1, exists: 0 } as const;

/** index-drop-dangling.lua. */
export const IndexDropDanglingReply = { removed: 1, kept: 0 } as const;

/** verify-batch.lua: the byte after a hash's fields ('e' is followed by the index score). */
export const VerifyBatchReply = { equal: 0x65 /* e */, differs: 0x64 /* d */ } as const;

/** record-facts.lua: the first byte of each key's reply ('n', 'h', 't'). */
export const RecordFactsReply = { absent: 0x6e, hash: 0x68, foreign: 0x74 } as const;

/** verify-v2-batch.lua: one string per v2 key; any other value is the key's type. */
export const VerifyV2BatchReply = {
  /** Its legacy record names its workspace: the legacy → v2 pass compares the pair whole. */
  backed: 'b',
  /** Gone since SCAN. */
  absent: 'n',
  /** A hash its legacy record does not back (an orphan or an id conflict). */
  unbacked: 'h',
} as const;

/** lock-release.lua. */
export const LockReleaseReply = { released: 1, notOurs: 0 } as const;

/**
 * The first word of a script's error reply (what follows it, if anything, is
 * its arguments). `FENCED lock` is a data script's refusal (the run no longer
 * holds the operator lock); `FENCED <fence>`, `EPOCH <epoch> <phase>`,
 * `WSPHASE <ws> <phase>` and `HISTORY_WRONGTYPE <type>` come from the state
 * scripts; the rest from the write scripts. `WRONGTYPE` is also Redis's own
 * reply for a command on a key of another type.
 */
export const ScriptError = {
  Fenced: 'FENCED',
  Epoch: 'EPOCH',
  WsPhase: 'WSPHASE',
  HistoryWrongType: 'HISTORY_WRONGTYPE',
  Exists: 'EXISTS',
  NotFound: 'NOTFOUND',
  WrongType: 'WRONGTYPE',
  BadRev: 'BADREV',
  QueueWrongType: 'QUEUE_WRONGTYPE',
  State: 'STATE',
} as const;
export type ScriptError = (typeof ScriptError)[keyof typeof ScriptError];

/** The argument of `FENCED` that data scripts give (src/core/lua/includes/holds-lock.lua). */
export const FENCED_LOCK = 'lock';

/** An error reply split into its code (first word) and arguments. */
export interface ScriptErrorReply {
  code: string;
  args: string[];
}

/** A Redis error reply as code and arguments; null for anything that is not an error reply (a connection error, a bug). */
export function scriptErrorReply(err: unknown): ScriptErrorReply | null {
  if (!isReplyError(err)) return null;
  const [code = '', ...args] = replyMessage(err).split(' ');
  return { code, args };
}

/** True when `err` is an error reply whose first word is `code`. */
export function isScriptError(err: unknown, code: ScriptError): boolean {
  return scriptErrorReply(err)?.code === code;
}

const COLON = 0x3a;
const DASH = 0x2d;

/**
 * `nf` fields from `pos`: per field '-' when absent, else <byte length> ':' <value> (read-fields-batch.lua,
 * xslot-read.lua, record-facts.lua, xslot-probe.lua, verify-batch.lua); `end.pos` receives the position after them.
 */
export function decodeFieldsAt(buf: Buffer, pos: number, nf: number, end?: { pos: number }): Array<string | null> {
  const row: Array<string | null> = [];
  for (let j = 0; j < nf; j++) {
    if (buf[pos] === DASH) {
      row.push(null);
      pos += 1;
      continue;
    }
    let len = 0;
    while (pos < buf.length && buf[pos] !== COLON) len = len * 10 + (buf[pos++]! - 0x30);
    pos += 1;
    row.push(buf.toString('utf8', pos, pos + len));
    pos += len;
  }
  if (end) end.pos = pos;
  return row;
}

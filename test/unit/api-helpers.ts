// Shared helpers of the API unit tests: the app over a MemoryJobQueue (unit tests only;
// integration tests use real Redis), a token table, and a captured log stream.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { MemoryJobQueue } from '../../src/core/memory-queue.js';
import { Phase } from '../../src/core/phase.js';
import { createRedactor } from '../../src/core/redact.js';
import { hashToken, TokenTable, type TokenEntry } from '../../src/api/auth.js';
import { CursorSealer } from '../../src/api/cursor-envelope.js';
import { createLogger } from '../../src/api/logger.js';
import { ApiMetrics } from '../../src/api/metrics.js';
import { buildApp } from '../../src/api/server.js';

/** Tokens used by the API tests (values are test-only). */
export const TOKENS = {
  a: 'tok-a-rw-0123456789',
  aRead: 'tok-a-ro-0123456789',
  b: 'tok-b-rw-0123456789',
  none: 'tok-noscope-0123456789',
  badWs: 'tok-badws-0123456789',
} as const;

export function tokenEntries(wsA = 'ws-a', wsB = 'ws-b'): TokenEntry[] {
  return [
    { sha256: hashToken(TOKENS.a), workspace_id: wsA, scopes: ['actions:preview', 'actions:write'] },
    { sha256: hashToken(TOKENS.aRead), workspace_id: wsA, scopes: ['actions:preview'] },
    { sha256: hashToken(TOKENS.b), workspace_id: wsB, scopes: ['actions:preview', 'actions:write'] },
    { sha256: hashToken(TOKENS.none), workspace_id: wsA, scopes: [] },
    { sha256: hashToken(TOKENS.badWs), workspace_id: 'WS:*', scopes: ['actions:preview', 'actions:write'] },
  ];
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** A writable that keeps every log line. */
export function captureStream(): { lines: string[]; write(s: string): void; text(): string } {
  const lines: string[] = [];
  return { lines, write: (s: string) => void lines.push(s), text: () => lines.join('') };
}

export interface MemoryApi {
  app: FastifyInstance;
  queue: MemoryJobQueue;
  metrics: ApiMetrics;
  logs: ReturnType<typeof captureStream>;
  setPhase(p: Phase): void;
}

export async function memoryApi(opts: { workspaceLabel?: boolean; allowlist?: string[]; phase?: Phase } = {}): Promise<MemoryApi> {
  let phase: Phase = opts.phase ?? Phase.Legacy;
  let epoch = 0;
  const queue = new MemoryJobQueue({ phase });
  const logs = captureStream();
  const redactor = createRedactor();
  const metrics = new ApiMetrics({ workspaceLabel: opts.workspaceLabel ?? false, allowlist: opts.allowlist ?? [] });
  const app = await buildApp({
    queue,
    phase: async () => ({ phase, epoch, shadowReadRate: 0 }),
    tokens: new TokenTable(tokenEntries()),
    cursor: new CursorSealer([randomBytes(32)]),
    metrics,
    redactor,
    logger: createLogger('debug', redactor, logs),
  });
  return {
    app,
    queue,
    metrics,
    logs,
    setPhase: (p) => {
      phase = p;
      epoch += 1;
      queue.setPhase(p);
    },
  };
}

import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/api/logger.js';
import { createRedactor } from '../../src/core/redact.js';
import { captureStream } from './api-helpers.js';

/** The `url` of every request line logged so far. */
function urls(logs: ReturnType<typeof captureStream>): string[] {
  return logs.lines.map((l) => (JSON.parse(l) as { req?: { url?: string } }).req?.url ?? '');
}

describe('request URLs in log lines (the logger remembers clean URLs)', () => {
  it('redacts a URL with a secret every time it is logged, and logs a clean one as is every time', () => {
    const logs = captureStream();
    const logger = createLogger('info', createRedactor(), logs);
    const secret = '/ai/jobs?limit=5&access_token=tok_not_for_logs_123456';
    const clean = '/ai/jobs?limit=50';
    for (let i = 0; i < 3; i++) {
      logger.info({ req: { method: 'GET', url: secret } }, 'incoming request');
      logger.info({ req: { method: 'GET', url: clean } }, 'incoming request');
    }
    const seen = urls(logs);
    expect(seen).toHaveLength(6);
    for (let i = 0; i < 6; i += 2) {
      expect(seen[i]).not.toContain('tok_not_for_logs');
      expect(seen[i]).toMatch(/^\/ai\/jobs\?limit=5&access_token=\*+$/);
      expect(seen[i + 1]).toBe(clean);
    }
    expect(logs.text()).not.toContain('tok_not_for_logs');
  });

  it('keeps redacting once the cache has been cleared by many distinct URLs', () => {
    const logs = captureStream();
    const logger = createLogger('info', createRedactor(), logs);
    for (let i = 0; i < 2500; i++) logger.info({ req: { method: 'GET', url: `/ai/jobs/job-${i}` } }, 'incoming request');
    logger.info({ req: { method: 'GET', url: '/ai/jobs?password=hunter2hunter2' } }, 'incoming request');
    expect(logs.text()).not.toContain('hunter2');
    expect(urls(logs).slice(0, 3)).toEqual(['/ai/jobs/job-0', '/ai/jobs/job-1', '/ai/jobs/job-2']);
  });
});

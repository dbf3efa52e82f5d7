/**
 * The API's pino logger. Secrets never reach a log line:
 *  - the request serializer keeps method, url, host and remote address only
 *    (no headers, never a body), and masks the values of sensitive query keys;
 *  - pino's redaction masks any authorization/cookie header that some other
 *    log call might carry;
 *  - the error serializer keeps type, code, message and stack (with causes)
 *    but drops everything else an error carries: an ioredis error's `command`
 *    holds the arguments of the failed command, i.e. job fields and params.
 */
import { pino, stdSerializers, type DestinationStream, type Logger } from 'pino';
import { REDACTED, type Redactor } from '../core/redact.js';
import type { LogLevel } from './config.js';

/** Paths pino masks wherever they appear. */
export const LOG_REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  'authorization',
  'res.headers["set-cookie"]',
];

/** The URL with the values of sensitive query parameters masked. */
export function safeUrl(url: string, redactor: Redactor): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  const probe = redactor(Object.fromEntries([...params.keys()].map((k) => [k, ''])) as Record<string, string>);
  const out: string[] = [];
  for (const [k, v] of params) out.push(`${encodeURIComponent(k)}=${probe[k] === REDACTED ? REDACTED : encodeURIComponent(v)}`);
  return `${url.slice(0, q)}?${out.join('&')}`;
}

interface ReqLike {
  method?: string;
  url?: string;
  host?: string;
  hostname?: string;
  ip?: string;
  socket?: { remoteAddress?: string };
}

/** Error serializer that keeps no payload data. */
export function safeErrorSerializer(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const s = stdSerializers.err(err);
  const code = (err as { code?: unknown }).code;
  return { type: s.type, message: s.message, stack: s.stack, ...(typeof code === 'string' ? { code } : {}) };
}

/** Builds the logger fastify uses (`loggerInstance`). */
export function createLogger(level: LogLevel, redactor: Redactor, stream?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'orch-api' },
    redact: { paths: LOG_REDACT_PATHS, censor: REDACTED },
    serializers: {
      req: (req: ReqLike) => ({
        method: req.method,
        url: req.url === undefined ? undefined : safeUrl(req.url, redactor),
        host: req.host ?? req.hostname,
        remoteAddress: req.ip ?? req.socket?.remoteAddress,
      }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
      err: safeErrorSerializer,
    },
  };
  return stream ? pino(options, stream) : pino(options);
}

/**
 * The API's pino logger. Secrets never reach a log line:
 *  - every log object goes through the central redactor (src/core/redact.ts),
 *    and so does every message string;
 *  - the request serializer keeps method, url, host and remote address only
 *    (no headers, never a body), and masks sensitive query parameters;
 *  - pino's redaction masks any authorization/cookie header that some other
 *    log call might carry;
 *  - the error serializer keeps type, code, message and stack (redacted text)
 *    but drops everything else an error carries: an ioredis error's `command`
 *    holds the arguments of the failed command, i.e. job fields and params.
 */
import { pino, stdSerializers, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { redact as defaultRedactor, REDACTED, type Redactor } from '../core/redact.js';
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

/** A request URL (path and query) with sensitive query parameters masked and credentials in it redacted. */
export function safeUrl(url: string, redactor: Redactor): string {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  return q < 0 ? redactor.text(path) : `${redactor.text(path)}?${redactor.query(url.slice(q + 1))}`;
}

/** URLs a logger remembers as holding nothing to redact, and the longest one it remembers. */
const MAX_CACHED_URLS = 1000;
const MAX_CACHED_URL_LENGTH = 512;

interface ReqLike {
  method?: string;
  url?: string;
  host?: string;
  hostname?: string;
  ip?: string;
  socket?: { remoteAddress?: string };
}

/** Error serializer that keeps no payload data; message and stack are redacted text. */
export function safeErrorSerializer(err: unknown, redactor: Redactor = defaultRedactor): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: redactor.text(String(err)) };
  const s = stdSerializers.err(err);
  const code = (err as { code?: unknown }).code;
  return { type: s.type, message: redactor.text(s.message), stack: redactor.text(s.stack), ...(typeof code === 'string' ? { code } : {}) };
}

/** Builds the logger fastify uses (`loggerInstance`). */
export function createLogger(level: LogLevel, redactor: Redactor, stream?: DestinationStream): Logger {
  // Every request line carries its URL, and clients repeat the same few. A URL in which redaction
  // found nothing is remembered (bounded, cleared when full), so it is not scanned again; one that
  // held something to mask is never kept, so the cache holds no secret.
  const urls = new Set<string>();
  const cachedSafeUrl = (url: string): string => {
    if (urls.has(url)) return url;
    const safe = safeUrl(url, redactor);
    if (safe === url && url.length <= MAX_CACHED_URL_LENGTH) {
      if (urls.size >= MAX_CACHED_URLS) urls.clear();
      urls.add(url);
    }
    return safe;
  };
  const options: LoggerOptions = {
    level,
    base: { service: 'orch-api' },
    redact: { paths: LOG_REDACT_PATHS, censor: REDACTED },
    // Every merged log object, before serializers: params, results and anything else a call passes.
    formatters: { log: (obj: Record<string, unknown>) => redactor(obj) },
    hooks: {
      // Message strings too (a message may quote a value).
      logMethod(args, method) {
        const redacted = args.map((a: unknown) => (typeof a === 'string' ? redactor.text(a) : a)) as Parameters<typeof method>;
        method.apply(this, redacted);
      },
    },
    serializers: {
      req: (req: ReqLike) => ({
        method: req.method,
        url: req.url === undefined ? undefined : cachedSafeUrl(req.url),
        host: req.host ?? req.hostname,
        remoteAddress: req.ip ?? req.socket?.remoteAddress,
      }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
      err: (err: unknown) => safeErrorSerializer(err, redactor),
    },
  };
  return stream ? pino(options, stream) : pino(options);
}

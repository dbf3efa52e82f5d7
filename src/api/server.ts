/**
 * The reference HTTP API (docs/api.md) as a fastify app.
 *
 * {@link buildApp} assembles the app from its parts, so unit tests can run it
 * over a MemoryJobQueue with `app.inject()`. {@link createApiService} wires the
 * real thing: a Redis connection with the long-lived `service` profile (it
 * reconnects by itself after a Redis restart), a {@link RedisJobQueue} that
 * follows the phase live (events channel + bounded cache), metrics and shadow reads.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import pLimit from 'p-limit';
import type { DestinationStream, Logger } from 'pino';
import { jsonTooDeep } from '../core/json-depth.js';
import { Keyspace } from '../core/keys.js';
import { DEFAULT_PAGE_MAX_BYTES } from '../core/listing.js';
import { Layout, readPathFor, type Phase } from '../core/phase.js';
import type { PhaseWatcherOptions } from '../core/phase-watcher.js';
import type { JobQueue } from '../core/queue.js';
import { createRedactor, type Redactor } from '../core/redact.js';
import { AclPermissionError } from '../core/errors.js';
import {
  classifyRedisError,
  closeRedis,
  ConnectionProfile,
  connectionTarget,
  connectRedis,
  parseRedisUrl,
  type RedisClient,
  type RedisConnectionOptions,
} from '../core/redis.js';
import { RedisJobQueue } from '../core/redis-queue.js';
import { StateCorruptError, StateStore } from '../core/state.js';
import { TokenTable, type Principal } from './auth.js';
import type { ApiConfig } from './config.js';
import { CursorSealer } from './cursor-envelope.js';
import { ApiError, toHttpError } from './http-errors.js';
import { createLogger } from './logger.js';
import { ApiMetrics, migrationSnapshotReader } from './metrics.js';
import { buildOpenApiDocument, type RegisteredRoute, type RouteDoc } from './openapi.js';
import { registerJobRoutes } from './routes.js';
import { HealthSchema, LiveSchema } from './schemas.js';
import { ShadowReader } from './shadow.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the route's auth hook. */
    orchPrincipal: Principal | null;
    /** The phase this request was started under (cached view). */
    orchPhase: PhaseView | null;
    orchStartedAt: bigint;
  }
}

/** What the API needs to know about the phase. */
export interface PhaseView {
  /** The global phase. */
  phase: Phase;
  epoch: number;
  /** Canary workspaces ahead of it (a workspace's reads follow effectivePhase, src/core/phase.ts); none when absent. */
  overrides?: Record<string, Phase>;
  /** Fraction of dual-write reads shadowed against v2 (state record `shadow_read_rate`). */
  shadowReadRate: number;
}

/** Readiness of the service's dependencies. */
export interface Readiness {
  ok: boolean;
  checks: Record<string, 'ok' | 'fail'>;
  phase?: PhaseView;
}

/** Everything the routes use. */
export interface ApiContext {
  queue: JobQueue;
  /** The phase (cached; refreshed on the events channel). */
  phase: () => Promise<PhaseView>;
  tokens: TokenTable;
  cursor: CursorSealer;
  metrics: ApiMetrics;
  redactor: Redactor;
  shadow: ShadowReader | null;
  /** Byte budget of one list page. */
  maxPageBytes: number;
  /** Runs the record reads of a page when one of the ORCH_API_LIST_CONCURRENCY slots is free (ListJobsOptions.recordSlot). */
  listSlots: <T>(fn: () => Promise<T>) => Promise<T>;
}

/** Options of {@link buildApp}. */
export interface BuildAppOptions extends Omit<ApiContext, 'shadow' | 'redactor' | 'maxPageBytes' | 'listSlots'> {
  logger: Logger;
  redactor?: Redactor;
  shadow?: ShadowReader | null;
  readiness?: () => Promise<Readiness>;
  /** False while the Redis connection is down: job routes then answer 503 at once instead of waiting. */
  redisReady?: () => boolean;
  bodyLimitBytes?: number;
  /** Byte budget of one list page (default DEFAULT_PAGE_MAX_BYTES). */
  maxPageBytes?: number;
  /** List pages built at once (default 2). */
  listConcurrency?: number;
  /** Requests whose headers and body take longer get 408 (default 30 s). */
  requestTimeoutMs?: number;
  /** The ACL user of the Redis connection, so a refusal's log line names the rule to grant to it. */
  redisUser?: string;
}

/** Deepest JSON a request body may nest: deeper bodies get 400 before anything walks them. */
export const MAX_BODY_DEPTH = 64;

/** Routes that never wait for Redis or the phase: liveness, readiness, metrics, the API document. */
const INFRA_ROUTES: ReadonlySet<string> = new Set(['/livez', '/healthz', '/metrics', '/openapi.json']);

const INFRA = ['service'];
const INFRA_DOCS = {
  livez: {
    summary: 'Liveness: the process is up and serving HTTP (never touches Redis)',
    description: 'Restart the process only when this fails. It answers 200 even while Redis is down: the service reconnects by itself.',
    tags: INFRA,
    scope: null,
    responses: { 200: { description: 'Alive', schema: LiveSchema } },
  },
  healthz: {
    summary: 'Readiness: Redis answers and the migration phase is readable',
    description:
      'Send traffic only while this answers 200. It answers 503 while Redis is unreachable or frozen, or the state record is unreadable, and 200 again as soon as the service has reconnected. ' +
      'It runs on a connection of its own, so it does not queue behind large list pages.',
    tags: INFRA,
    scope: null,
    responses: {
      200: { description: 'Ready', schema: HealthSchema },
      503: { description: 'Not ready (see checks)', schema: HealthSchema, headers: { 'retry-after': 'Seconds to wait' } },
    },
  },
  metrics: {
    summary: 'Prometheus metrics (text exposition format)',
    tags: INFRA,
    scope: null,
    responses: { 200: { description: 'Metrics', contentType: 'text/plain; version=0.0.4' } },
  },
  openapi: {
    summary: 'This document (OpenAPI 3.1)',
    tags: INFRA,
    scope: null,
    responses: { 200: { description: 'The OpenAPI document', contentType: 'application/json' } },
  },
} satisfies Record<string, RouteDoc>;

/** The package version, for the API document (dist/src/api or src/api both sit two or three levels below the root). */
function packageVersion(): string {
  for (const rel of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'orch-migrate' && pkg.version) return pkg.version;
    } catch {
      // Not at this level: try the next.
    }
  }
  return '0.0.0';
}

/** A 4xx cause, compact: type, message and the type of each cause (stacks are for 5xx). */
function briefError(err: unknown): { type: string; message: string; causes?: string[] } {
  if (!(err instanceof Error)) return { type: typeof err, message: String(err).slice(0, 300) };
  const causes: string[] = [];
  let c: unknown = err.cause;
  while (c instanceof Error && causes.length < 5) {
    causes.push(c.name);
    c = c.cause;
  }
  return { type: err.name, message: err.message.slice(0, 300), ...(causes.length > 0 ? { causes } : {}) };
}

/** Accepted incoming x-request-id values; anything else gets a fresh id (no log injection). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** Builds the fastify app. */
export async function buildApp(opts: BuildAppOptions): Promise<FastifyInstance> {
  const slots = pLimit(opts.listConcurrency ?? 2);
  const ctx: ApiContext = {
    queue: opts.queue,
    phase: opts.phase,
    tokens: opts.tokens,
    cursor: opts.cursor,
    metrics: opts.metrics,
    redactor: opts.redactor ?? createRedactor(),
    shadow: opts.shadow ?? null,
    maxPageBytes: opts.maxPageBytes ?? DEFAULT_PAGE_MAX_BYTES,
    listSlots: (fn) => slots(fn),
  };
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    requestIdHeader: false,
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
    },
    bodyLimit: opts.bodyLimitBytes ?? 256 * 1024,
    // Job ids are up to 128 characters: longer ones reach the schema and get a clean 400
    // (fastify answers 414 only above this bound).
    routerOptions: { maxParamLength: 1024 },
    return503OnClosing: true,
    // A client that trickles its request cannot hold a socket (and a slot) forever.
    requestTimeout: opts.requestTimeoutMs ?? 30_000,
  });

  const routes: RegisteredRoute[] = [];
  app.addHook('onRoute', (r) => {
    for (const method of Array.isArray(r.method) ? r.method : [r.method]) routes.push({ method, url: r.url, doc: r.config?.doc });
  });

  // Bodies are JSON only (fastify would otherwise also accept text/plain).
  app.removeContentTypeParser('text/plain');
  // Nesting is checked on the text, in one linear pass, before anything parses or walks it:
  // a small body nested thousands of levels deep would otherwise overflow the stack later (500).
  const jsonParser = app.getDefaultJsonParser('error', 'ignore');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (jsonTooDeep(text, MAX_BODY_DEPTH)) {
      done(new ApiError(400, 'invalid_request', `Invalid body: JSON nested deeper than ${MAX_BODY_DEPTH} levels`), undefined);
      return;
    }
    jsonParser(request, text, done);
  });
  app.decorateRequest('orchPrincipal', null);
  app.decorateRequest('orchPhase', null);
  app.decorateRequest('orchStartedAt', 0n);

  let lastKnown: PhaseView | null = null;
  let phaseFailing = false;
  /** Set while the state record is corrupt or lost: job routes refuse rather than guess a read path. */
  let stateUnusable = false;
  const currentPhase = async (): Promise<PhaseView | null> => {
    try {
      lastKnown = await ctx.phase();
      if (phaseFailing) app.log.info('the migration phase is readable again');
      phaseFailing = false;
      stateUnusable = false;
    } catch (err) {
      stateUnusable = err instanceof StateCorruptError;
      // The route itself fails with 503 if it needs Redis; the header keeps the last known path.
      // Logged once per outage, not once per request.
      if (!phaseFailing) app.log.warn({ err }, 'cannot read the migration phase; using the last known one');
      phaseFailing = true;
    }
    return lastKnown;
  };

  app.addHook('onRequest', async (request, reply) => {
    request.orchStartedAt = process.hrtime.bigint();
    reply.header('x-request-id', request.id);
    const route = request.routeOptions.url;
    if (route === undefined || INFRA_ROUTES.has(route)) {
      // Liveness, readiness and metrics never wait for Redis: the last known phase names the read path.
      if (lastKnown === null && route !== undefined) void currentPhase();
      reply.header('x-read-path', lastKnown ? readPathFor(lastKnown.phase) : Layout.Legacy);
      return;
    }
    if (opts.redisReady && !opts.redisReady()) {
      // Redis is down and the client is reconnecting: answer now rather than wait for a timeout.
      reply.header('x-read-path', lastKnown ? readPathFor(lastKnown.phase) : Layout.Legacy);
      throw new ApiError(503, 'unavailable', 'Service temporarily unavailable');
    }
    const view = await currentPhase();
    request.orchPhase = view;
    reply.header('x-read-path', view ? readPathFor(view.phase) : Layout.Legacy);
    if (stateUnusable) throw new ApiError(503, 'unavailable', 'Service temporarily unavailable');
  });

  app.addHook('onResponse', async (request, reply) => {
    const seconds = Number(process.hrtime.bigint() - request.orchStartedAt) / 1e9;
    const header = reply.getHeader('x-read-path');
    const readPath = header === Layout.Legacy || header === Layout.V2 ? header : 'unknown';
    const route = request.routeOptions.url ?? 'unmatched';
    ctx.metrics.observeRequest(request.method, route, reply.statusCode, readPath, seconds);
  });

  app.setErrorHandler(async (err, request, reply) => {
    const view = toHttpError(err);
    // A missing ACL permission does not heal by itself: say once per request, at error, which rule to add.
    const acl = classifyRedisError(err, 'redis', { user: opts.redisUser ?? 'default' });
    if (acl instanceof AclPermissionError)
      request.log.error({ acl_rule: acl.rule, refused: acl.message }, `Redis ACL refused a command; grant it with: ${acl.rule}`);
    // 503s come in bursts while Redis is away (each one is expected and the outage is logged once):
    // a line without a stack each, at warn. Anything else at 5xx is a bug worth its stack.
    if (view.status === 503) request.log.warn({ unavailable: briefError(err), error_code: view.code }, 'request refused: temporarily unavailable');
    else if (view.status >= 500) request.log.error({ err }, 'request failed');
    else request.log.info({ rejected: briefError(err), error_code: view.code }, 'request rejected');
    if (view.status === 503) reply.header('retry-after', '1');
    return reply.code(view.status).send({ error: view.code, message: view.message, request_id: request.id });
  });

  app.setNotFoundHandler(async (request, reply) => reply.code(404).send({ error: 'not_found', message: 'Not found', request_id: request.id }));

  registerJobRoutes(app, ctx);

  app.get('/livez', { config: { doc: INFRA_DOCS.livez } }, async () => ({ status: 'ok' as const }));

  app.get('/healthz', { config: { doc: INFRA_DOCS.healthz } }, async (_request, reply) => {
    const r = opts.readiness ? await opts.readiness() : { ok: true, checks: {} };
    const body: Record<string, unknown> = { status: r.ok ? 'ok' : 'unavailable', checks: r.checks };
    if (r.phase) {
      body.phase = r.phase.phase;
      body.epoch = r.phase.epoch;
      body.read_path = readPathFor(r.phase.phase);
      reply.header('x-read-path', readPathFor(r.phase.phase));
    }
    if (!r.ok) reply.header('retry-after', '1');
    return reply.code(r.ok ? 200 : 503).send(body);
  });

  app.get('/metrics', { config: { doc: INFRA_DOCS.metrics } }, async (_request, reply) => {
    const m = await ctx.metrics.render();
    return reply.header('content-type', m.contentType).send(m.body);
  });

  let openapi: string | null = null;
  app.get('/openapi.json', { config: { doc: INFRA_DOCS.openapi } }, async (_request, reply) => {
    openapi ??= JSON.stringify(buildOpenApiDocument(routes, { title: 'orch-api', version: packageVersion() }));
    return reply.header('content-type', 'application/json; charset=utf-8').send(openapi);
  });

  return app;
}

/** The running service's parts. */
export interface ApiService {
  app: FastifyInstance;
  queue: RedisJobQueue;
  client: RedisClient;
  metrics: ApiMetrics;
  logger: Logger;
  shadow: ShadowReader;
  /** Closes the HTTP server, waits for shadow reads, releases Redis (only a client it opened). */
  close(): Promise<void>;
}

/** Options of {@link createApiService}. */
export interface ApiServiceOptions {
  /** Where log lines go (tests capture them); default stdout. */
  logStream?: DestinationStream;
  /** A ready logger (overrides logStream). */
  logger?: Logger;
  /** Reuse an open client (it is not closed by close()). */
  client?: RedisClient;
  /** Collect Node process metrics too (the service does; tests do not). */
  defaultMetrics?: boolean;
  /** Phase cache settings passed to the queue core. */
  phase?: Omit<PhaseWatcherOptions, 'onChange'>;
  /** Random source of the shadow sampler (tests). */
  shadowRandom?: () => number;
  /** Connection tuning on top of the service profile (tests shorten the timeouts). */
  redis?: Pick<RedisConnectionOptions, 'commandTimeoutMs' | 'connectTimeoutMs' | 'maxBackoffMs'>;
}

/** A readiness probe step that takes longer than this fails (Redis frozen or overloaded). */
const HEALTH_TIMEOUT_MS = 2000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error('health check timed out')), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** The layout a mirror key belongs to (metrics label). */
function layoutOfKey(keys: Keyspace, key: string): Layout | 'unknown' {
  if (keys.parseV2(key)) return Layout.V2;
  if (keys.legacySuffix(key) !== null) return Layout.Legacy;
  return 'unknown';
}

/** Connects to Redis and builds the API over a {@link RedisJobQueue}. */
export async function createApiService(config: ApiConfig, opts: ApiServiceOptions = {}): Promise<ApiService> {
  const redactor = createRedactor(config.sensitiveKeys);
  const logger = opts.logger ?? createLogger(config.logLevel, redactor, opts.logStream);
  if (config.cursorSecretGenerated) {
    // The value is deliberately not logged: anyone who can read the logs could forge cursors with it.
    logger.warn(
      'ORCH_API_CURSOR_SECRET is not set: generated a random cursor secret for this process (value not logged). ' +
        'Cursors will not survive a restart and are not valid on other replicas; set ORCH_API_CURSOR_SECRET to share one.',
    );
  }
  const tokens = new TokenTable(config.tokens);
  const invalid = tokens.invalidWorkspaces();
  if (invalid > 0) logger.warn({ entries: invalid }, 'token table entries with an invalid workspace_id: their requests get 403');
  if (config.metricsWorkspaceLabel && config.metricsWorkspaceAllowlist.length === 0) {
    logger.warn('METRICS_WORKSPACE_LABEL=on with an empty METRICS_WORKSPACE_ALLOWLIST: every workspace is labelled "unscoped"');
  }

  const redisUser = parseRedisUrl(config.redisUrl).username ?? 'default';
  const ownsClient = opts.client === undefined;
  const client =
    opts.client ??
    (await connectRedis({
      url: config.redisUrl,
      cluster: config.redisCluster,
      tls: config.redisTls,
      sentinel: config.redisSentinel,
      profile: ConnectionProfile.Service,
      connectionName: 'orch-api',
      ...opts.redis,
    }));
  // The connection's ups and downs, once per transition (the service reconnects by itself).
  let connected = true;
  const onDown = (): void => {
    if (!connected) return;
    connected = false;
    logger.warn('lost the Redis connection; reconnecting (requests answer 503 meanwhile)');
  };
  const onUp = (): void => {
    if (connected) return;
    connected = true;
    logger.info('Redis connection ready again');
  };
  client.on('close', onDown);
  client.on('ready', onUp);
  // A connection of its own for /healthz, so readiness never queues behind large list pages.
  const health = client.duplicate();
  health.on('error', () => undefined);
  const healthStore = new StateStore(health, config.keys);

  let queue: RedisJobQueue | null = null;
  const phase = async (): Promise<PhaseView> => {
    if (!queue) throw new Error('queue not ready');
    const s = await queue.phase();
    // The queue core keeps the last valid phase when the record turns unusable (its writers
    // must not fall back to legacy); the API must not guess either: its job routes answer 503.
    const problem = queue.watcher.problem;
    if (problem) throw problem;
    return { phase: s.phase, epoch: s.epoch, overrides: s.overrides, shadowReadRate: s.shadowReadRate };
  };
  const metrics = new ApiMetrics({
    workspaceLabel: config.metricsWorkspaceLabel,
    allowlist: config.metricsWorkspaceAllowlist,
    defaultMetrics: opts.defaultMetrics ?? false,
    phaseSource: phase,
    migrationSource: migrationSnapshotReader(client, config.keys),
  });
  const release = async (): Promise<void> => {
    client.off('close', onDown);
    client.off('ready', onUp);
    // The probe connection holds no state worth a QUIT (and may never have connected).
    health.disconnect();
    if (ownsClient) await closeRedis(client);
  };
  try {
    queue = await RedisJobQueue.create(client, {
      keys: config.keys,
      legacyScanCount: config.legacyScanCount,
      phase: {
        ...opts.phase,
        onChange: (s) => {
          metrics.setPhase(s.phase, s.epoch);
          logger.info(
            { phase: s.phase, epoch: s.epoch, read_path: readPathFor(s.phase) },
            `migration phase ${s.phase} (epoch ${s.epoch}): reads follow ${readPathFor(s.phase)}`,
          );
        },
      },
      onMirrorFailure: (f) => {
        metrics.mirrorFailure(layoutOfKey(config.keys, f.key));
        logger.warn(
          { err: f.error, job_id: f.jobId, mirror_key: f.key },
          'mirror write failed; the primary holds the write (verify --repair fixes the mirror)',
        );
      },
    });
  } catch (err) {
    await release();
    // Named like the CLI names it: a missing ACL permission (the events channel, say) is exit 2 with the rule.
    throw classifyRedisError(err, connectionTarget({ url: config.redisUrl, sentinel: config.redisSentinel }), { user: redisUser, tls: config.redisTls });
  }
  const q = queue;
  const shadow = new ShadowReader({ client, keys: config.keys, metrics, ...(opts.shadowRandom ? { random: opts.shadowRandom } : {}) });

  const redisReady = (): boolean => client.status === 'ready';
  let probing: Promise<Readiness> | null = null;
  let wasReady = true;
  const probe = async (): Promise<Readiness> => {
    const checks: Record<string, 'ok' | 'fail'> = { redis: 'fail', phase: 'fail' };
    let view: PhaseView | undefined;
    let failure: unknown = null;
    try {
      if (!redisReady()) throw new Error('the Redis connection is down (reconnecting)');
      await withTimeout(health.ping(), HEALTH_TIMEOUT_MS);
      checks.redis = 'ok';
      const s = await withTimeout(healthStore.read(), HEALTH_TIMEOUT_MS);
      checks.phase = 'ok';
      view = { phase: s.phase, epoch: s.epoch, shadowReadRate: s.shadowReadRate };
    } catch (err) {
      failure = err;
    }
    const ok = checks.redis === 'ok' && checks.phase === 'ok';
    // Logged on a change of readiness, not on every probe: a load balancer probes often.
    if (!ok && wasReady) logger.warn({ err: failure, checks }, 'not ready');
    if (ok && !wasReady) logger.info({ checks }, 'ready again');
    wasReady = ok;
    return { ok, checks, ...(view ? { phase: view } : {}) };
  };
  // Probes arriving together share one round trip; every probe after that reads Redis afresh.
  const readiness = (): Promise<Readiness> => {
    probing ??= probe().finally(() => {
      probing = null;
    });
    return probing;
  };

  const app = await buildApp({
    queue: q,
    phase,
    tokens,
    cursor: new CursorSealer(config.cursorSecrets),
    metrics,
    redactor,
    logger,
    shadow,
    bodyLimitBytes: config.bodyLimitBytes,
    maxPageBytes: config.maxPageBytes,
    listConcurrency: config.listConcurrency,
    requestTimeoutMs: config.requestTimeoutMs,
    redisReady,
    readiness,
    redisUser,
  });

  let closed = false;
  return {
    app,
    queue: q,
    client,
    metrics,
    logger,
    shadow,
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
      await shadow.drain();
      await q.close();
      await release();
    },
  };
}

/**
 * The routes. Endpoint code never branches on the phase: the queue core picks
 * the layout; the routes only scope by the token's workspace, validate input,
 * seal cursors and redact what they return (params, result, error).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ZodError, type ZodType } from 'zod';
import { CursorError } from '../core/errors.js';
import { effectivePhase, Layout, readPathFor, type Phase } from '../core/phase.js';
import { Scope, type Principal } from './auth.js';
import { ApiError, zodSummary } from './http-errors.js';
import type { RouteDoc } from './openapi.js';
import {
  CreateJobSchema,
  DEFAULT_LIMIT,
  ErrorBodySchema,
  JobParamsSchema,
  listQueryFast,
  ListQuerySchema,
  ListResponseSchema,
  PatchJobSchema,
  toWireJob,
  WireJobSchema,
  type ListResponse,
  type WireJob,
} from './schemas.js';
import type { ApiContext, PhaseView } from './server.js';

const JOBS = ['jobs'];

/** The OpenAPI description of each job route (src/api/openapi.ts); the schemas are the ones the handlers parse with. */
export const JOB_ROUTE_DOCS = {
  list: {
    summary: "List the token's workspace's jobs, one page at a time",
    description:
      'Pages are bounded by `limit` and by a byte budget (ORCH_API_MAX_PAGE_BYTES): a page may hold fewer than `limit` jobs and still have a next_cursor. ' +
      'Paging never skips a job. Order: on the v2 read path by created_at then job_id; on the legacy path in SCAN order per Redis master (no meaningful order). ' +
      'A cursor is bound to the workspace and the read path: after a phase flip it is refused with 400 cursor_read_path_changed.',
    tags: JOBS,
    scope: Scope.Preview,
    query: ListQuerySchema,
    responses: { 200: { description: 'One page', schema: ListResponseSchema } },
  },
  get: {
    summary: "One job of the token's workspace",
    tags: JOBS,
    scope: Scope.Preview,
    params: JobParamsSchema,
    responses: {
      200: { description: 'The job (params, result and error redacted)', schema: WireJobSchema },
      404: { description: "No such job in this workspace (the same answer whether it is absent or another workspace's)", schema: ErrorBodySchema },
    },
  },
  create: {
    summary: "Enqueue a job in the token's workspace",
    description:
      'Job ids are unique across all workspaces while the legacy layout exists (its keys carry no workspace). ' +
      'A job_id already in use answers 409 with the same body whichever workspace uses it.',
    tags: JOBS,
    scope: Scope.Write,
    body: CreateJobSchema,
    responses: {
      201: { description: 'Created (status queued)', schema: WireJobSchema, headers: { location: 'URL of the new job' } },
      409: { description: 'job_id is already in use', schema: ErrorBodySchema },
      413: { description: 'Body larger than ORCH_API_BODY_LIMIT_BYTES', schema: ErrorBodySchema },
      415: { description: 'Body is not application/json', schema: ErrorBodySchema },
    },
  },
  patch: {
    summary: 'Update status, result and error of a job (as a worker does)',
    tags: JOBS,
    scope: Scope.Write,
    params: JobParamsSchema,
    body: PatchJobSchema,
    responses: {
      200: { description: 'The updated job', schema: WireJobSchema },
      404: { description: 'No such job in this workspace', schema: ErrorBodySchema },
      413: { description: 'Body larger than ORCH_API_BODY_LIMIT_BYTES', schema: ErrorBodySchema },
      415: { description: 'Body is not application/json', schema: ErrorBodySchema },
    },
  },
} satisfies Record<string, RouteDoc>;

function parse<T>(schema: ZodType<T>, value: unknown, what: string): T {
  const res = schema.safeParse(value ?? {});
  if (!res.success) throw new ApiError(400, 'invalid_request', zodSummary(res.error, what), { cause: res.error });
  return res.data;
}

/** The phase a workspace's requests follow: its canary phase when it runs ahead, else the global one. */
function phaseFor(view: PhaseView, workspaceId: string): Phase {
  return effectivePhase(view.phase, view.overrides?.[workspaceId]);
}

/** The principal set by the route's auth hook. */
function principalOf(request: FastifyRequest): Principal {
  const p = request.orchPrincipal;
  if (!p) throw new ApiError(401, 'unauthorized', 'Missing bearer token');
  return p;
}

/** Route-level onRequest hook: authenticates and checks the scope before any body is read. */
export function requireScope(ctx: ApiContext, scope: Scope) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const res = ctx.tokens.authenticate(request.headers.authorization, scope);
    if (res.ok) {
      request.orchPrincipal = res.principal;
      // Now that the workspace is known, the read path header (and the metrics label) is this workspace's.
      if (request.orchPhase) reply.header('x-read-path', readPathFor(phaseFor(request.orchPhase, res.principal.workspaceId)));
      return;
    }
    if (res.status === 401) {
      reply.header('www-authenticate', res.error === 'unauthorized' ? 'Bearer realm="orch-api"' : 'Bearer realm="orch-api", error="invalid_token"');
    } else if (res.error === 'insufficient_scope') {
      reply.header('www-authenticate', `Bearer realm="orch-api", error="insufficient_scope", scope="${scope}"`);
    }
    request.log.info({ auth: res.error }, 'request refused by auth');
    await reply.code(res.status).send({ error: res.error, message: res.message, request_id: request.id });
  };
}

/** Registers /ai/jobs routes. */
export function registerJobRoutes(app: FastifyInstance, ctx: ApiContext): void {
  // While the state record is unusable the app's onRequest hook answers 503 (src/api/server.ts).
  const preview = requireScope(ctx, Scope.Preview);
  const write = requireScope(ctx, Scope.Write);
  const wire = (j: Parameters<typeof toWireJob>[0]): WireJob => toWireJob(j, ctx.redactor);

  app.get('/ai/jobs', { onRequest: preview, config: { doc: JOB_ROUTE_DOCS.list } }, async (request, reply): Promise<ListResponse> => {
    const { workspaceId } = principalOf(request);
    const q = listQueryFast(request.query) ?? parse(ListQuerySchema, request.query, 'query');
    const limit = q.limit ?? DEFAULT_LIMIT;
    const view = request.orchPhase ?? (await ctx.phase());
    let raw: string | null = null;
    if (q.cursor !== undefined) {
      try {
        raw = ctx.cursor.open(q.cursor, workspaceId, readPathFor(phaseFor(view, workspaceId)));
      } catch (err) {
        ctx.metrics.cursorRejected(/read path/.test(err instanceof Error ? err.message : '') ? 'read_path_changed' : 'invalid');
        throw err;
      }
    }
    const started = process.hrtime.bigint();
    let page;
    try {
      // Pages hold their records a few at a time (ORCH_API_LIST_CONCURRENCY): each one holds up to its byte
      // budget in memory several times over (Redis reply, parsed jobs, redacted copy, JSON text). The slot
      // covers the record reads only: a v2 page's index read (at most limit + 1 ids) waits for no slot, so
      // the event loop is not left idle while both slots wait on Redis (docs/performance.md, "The API's page").
      page = await ctx.queue.listJobs(workspaceId, { limit, cursor: raw, maxBytes: ctx.maxPageBytes, recordSlot: ctx.listSlots });
    } catch (err) {
      if (err instanceof CursorError) ctx.metrics.cursorRejected(/read path/.test(err.message) ? 'read_path_changed' : 'invalid');
      throw err;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    reply.header('x-read-path', page.readPath);
    ctx.metrics.observeList(workspaceId, page.readPath, page.jobs.length, seconds);
    if (ctx.shadow && page.readPath === Layout.Legacy && ctx.shadow.sampled(phaseFor(view, workspaceId), view.shadowReadRate)) {
      ctx.shadow.shadow(workspaceId, page.jobs, request.log);
    }
    return {
      workspace_id: workspaceId,
      jobs: page.jobs.map(wire),
      count: page.jobs.length,
      next_cursor: page.nextCursor === null ? null : ctx.cursor.seal(page.nextCursor, workspaceId, page.readPath),
    };
  });

  app.get('/ai/jobs/:job_id', { onRequest: preview, config: { doc: JOB_ROUTE_DOCS.get } }, async (request): Promise<WireJob> => {
    const { workspaceId } = principalOf(request);
    const { job_id } = parse(JobParamsSchema, request.params, 'job id');
    const job = await ctx.queue.getJob(workspaceId, job_id);
    // Same answer whether the job is absent or belongs to another workspace.
    if (!job) throw new ApiError(404, 'not_found', 'Job not found');
    const view = request.orchPhase;
    if (
      ctx.shadow &&
      view &&
      readPathFor(phaseFor(view, workspaceId)) === Layout.Legacy &&
      ctx.shadow.sampled(phaseFor(view, workspaceId), view.shadowReadRate)
    ) {
      ctx.shadow.shadow(workspaceId, [job], request.log);
    }
    return wire(job);
  });

  app.post('/ai/jobs', { onRequest: write, config: { doc: JOB_ROUTE_DOCS.create } }, async (request, reply): Promise<WireJob> => {
    const { workspaceId } = principalOf(request);
    const body = parse(CreateJobSchema, request.body, 'body');
    // Job ids are global, not per workspace, for as long as the legacy layout exists: a legacy key
    // is `<prefix>:jobs:<job_id>` with no workspace in it, so two workspaces cannot both hold an id
    // there, and the queue core refuses a create that would collide (docs/api.md, "Job ids").
    // The refusal is one 409 with one body whoever holds the id: answering differently for
    // another workspace's id would tell a tenant that the id exists elsewhere.
    const job = await ctx.queue.enqueue({
      workspaceId,
      action: body.action,
      params: body.params,
      ...(body.job_id === undefined ? {} : { jobId: body.job_id }),
    });
    reply.code(201).header('location', `/ai/jobs/${encodeURIComponent(job.jobId)}`);
    return wire(job);
  });

  app.patch('/ai/jobs/:job_id', { onRequest: write, config: { doc: JOB_ROUTE_DOCS.patch } }, async (request): Promise<WireJob> => {
    const { workspaceId } = principalOf(request);
    const { job_id } = parse(JobParamsSchema, request.params, 'job id');
    const body = parse(PatchJobSchema, request.body, 'body');
    try {
      const job = await ctx.queue.updateStatus(workspaceId, job_id, {
        status: body.status,
        ...(body.result === undefined ? {} : { result: body.result }),
        ...(body.error === undefined ? {} : { error: body.error }),
      });
      return wire(job);
    } catch (err) {
      if (err instanceof ZodError) throw new ApiError(400, 'invalid_request', zodSummary(err, 'body'), { cause: err });
      throw err;
    }
  });
}

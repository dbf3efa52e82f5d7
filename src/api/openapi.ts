/**
 * The OpenAPI 3.1 document served at /openapi.json, generated from the routes
 * as they are registered: every route carries a {@link RouteDoc} (its zod
 * schemas for query, path params, body and answers) in its fastify `config`,
 * an `onRoute` hook collects them, and `z.toJSONSchema` turns the schemas
 * into JSON Schema 2020-12 (the dialect of OpenAPI 3.1). The handlers parse
 * requests with the very same schema objects, so the document cannot drift
 * from what the service accepts.
 */
import { z } from 'zod';
import type { Scope } from './auth.js';
import { ErrorBodySchema } from './schemas.js';

/** An answer of a route. */
export interface ResponseDoc {
  description: string;
  /** Body schema; absent for answers without a JSON body. */
  schema?: z.ZodType;
  /** Content type of a non-JSON body (e.g. the Prometheus text format). */
  contentType?: string;
  /** Response headers worth naming. */
  headers?: Record<string, string>;
}

/** What a route documents about itself. */
export interface RouteDoc {
  summary: string;
  description?: string;
  tags: string[];
  /** Bearer scope the route needs; null for public routes. */
  scope: Scope | null;
  query?: z.ZodObject;
  params?: z.ZodObject;
  body?: z.ZodType;
  responses: Record<number, ResponseDoc>;
}

/** A route as registered. */
export interface RegisteredRoute {
  method: string;
  url: string;
  doc: RouteDoc | undefined;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's OpenAPI description (src/api/openapi.ts). */
    doc?: RouteDoc;
  }
}

/** Headers every answer carries. */
const COMMON_HEADERS: Record<string, string> = {
  'x-request-id': 'Request id (echoed when the request sent a well-formed x-request-id, else generated); also in the logs',
  'x-read-path': 'legacy or v2: the layout the migration phase selects for reads',
};

/** The answers any authenticated route may give besides its own. */
const AUTH_ERRORS: Record<number, string> = {
  401: 'Missing, malformed or unknown bearer token',
  403: 'The token lacks the scope, or its workspace is invalid',
};
const COMMON_ERRORS: Record<number, string> = {
  503: 'Redis or the migration phase is unavailable; retry after the retry-after header',
  500: 'Internal error (details only in the logs, under the request id)',
};

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const s = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Record<string, unknown>;
  // Each schema is embedded in the document; the dialect is declared once at the top.
  delete s.$schema;
  return s;
}

function parameters(where: 'query' | 'path', schema: z.ZodObject | undefined): Array<Record<string, unknown>> {
  if (!schema) return [];
  return Object.entries(schema.shape).map(([name, field]) => {
    const f = field as z.ZodType;
    const js = jsonSchema(f, 'input');
    const description = typeof js.description === 'string' ? js.description : undefined;
    delete js.description;
    return {
      name,
      in: where,
      required: where === 'path' || !f.safeParse(undefined).success,
      ...(description ? { description } : {}),
      schema: js,
    };
  });
}

function response(r: ResponseDoc): Record<string, unknown> {
  const headers = { ...COMMON_HEADERS, ...r.headers };
  return {
    description: r.description,
    headers: Object.fromEntries(Object.entries(headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }])),
    ...(r.schema
      ? { content: { [r.contentType ?? 'application/json']: { schema: jsonSchema(r.schema, 'output') } } }
      : r.contentType
        ? { content: { [r.contentType]: { schema: { type: 'string' } } } }
        : {}),
  };
}

function errorResponse(description: string): ResponseDoc {
  return { description, schema: ErrorBodySchema };
}

/** `/ai/jobs/:job_id` → `/ai/jobs/{job_id}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** Builds the document from the registered routes (HEAD twins and undocumented routes are left out). */
export function buildOpenApiDocument(routes: readonly RegisteredRoute[], info: { title: string; version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    if (!r.doc || r.method === 'HEAD') continue;
    const d = r.doc;
    const answers: Record<number, ResponseDoc> = { ...d.responses };
    if (d.query || d.params || d.body) answers[400] ??= errorResponse('Invalid request: the message names the field and the rule');
    if (d.scope) for (const [code, text] of Object.entries(AUTH_ERRORS)) answers[Number(code)] ??= errorResponse(text);
    if (d.scope) for (const [code, text] of Object.entries(COMMON_ERRORS)) answers[Number(code)] ??= errorResponse(text);
    const op: Record<string, unknown> = {
      operationId: `${r.method.toLowerCase()}${openApiPath(r.url).replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      summary: d.summary,
      ...(d.description ? { description: d.description } : {}),
      tags: d.tags,
      security: d.scope ? [{ bearer: [] }] : [],
      ...(d.scope ? { 'x-required-scope': d.scope } : {}),
      parameters: [...parameters('path', d.params), ...parameters('query', d.query)],
      ...(d.body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(d.body, 'input') } } } } : {}),
      responses: Object.fromEntries(
        Object.entries(answers)
          .sort(([a], [b]) => Number(a) - Number(b))
          .map(([code, doc]) => [code, response(doc)]),
      ),
    };
    (paths[openApiPath(r.url)] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: info.title,
      version: info.version,
      description:
        'Reference API of the AI Orchestrator job store during the migration to per-workspace keys. ' +
        'The workspace always comes from the bearer token. See docs/api.md for paging, ordering, redaction and errors.',
    },
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'A token from `orch-api token create`; the service stores only its sha256. GET routes need actions:preview, POST and PATCH actions:write (see x-required-scope).',
        },
      },
    },
    paths,
  };
}

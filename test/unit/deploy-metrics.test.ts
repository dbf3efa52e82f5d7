/**
 * deploy/: every metric the Grafana dashboard and the Prometheus rules query
 * exists. `api` names (and their labels) are checked against the registry
 * src/api/metrics.ts really builds; the others against deploy/metric-names.json,
 * the one list of what the dashboard and rules may use. A panel or rule that
 * names an unknown metric, or filters on a label the metric does not have,
 * fails here instead of showing "No data" in the middle of a migration.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ApiMetrics } from '../../src/api/metrics.js';
import { annotationQueries, metricRefs, type MetricRef } from '../helpers/promql-names.js';

const file = (rel: string): string => fileURLToPath(new URL(`../../deploy/${rel}`, import.meta.url));

interface NameEntry {
  name: string;
  component: 'api' | 'cli' | 'prometheus';
  type: 'counter' | 'gauge' | 'histogram' | 'summary';
  labels: string[];
  planned?: string;
}

/** A known metric: its type and labels, from the registry (api) or the list (the rest). */
interface Known {
  type: string;
  labels: Set<string>;
  source: string;
}

const names = (JSON.parse(readFileSync(file('metric-names.json'), 'utf8')) as { metrics: NameEntry[] }).metrics;

/** What src/api/metrics.ts registers, with every optional label and the process metrics turned on. */
function apiRegistry(): Map<string, Known> {
  const m = new ApiMetrics({ workspaceLabel: true, allowlist: [], defaultMetrics: true });
  const out = new Map<string, Known>();
  for (const metric of m.registry.getMetricsAsArray() as unknown as Array<{ name: string; type: string; labelNames?: string[] }>) {
    out.set(metric.name, { type: metric.type, labels: new Set(metric.labelNames ?? []), source: 'src/api/metrics.ts' });
  }
  return out;
}

/** Names a query may use: api from the registry (planned ones from the list until they are registered), the rest from the list. */
function knownMetrics(registry: Map<string, Known>): Map<string, Known> {
  const known = new Map<string, Known>();
  for (const e of names) {
    if (e.component === 'api') {
      const r = registry.get(e.name);
      if (r) known.set(e.name, r);
      else if (e.planned) known.set(e.name, { type: e.type, labels: new Set(e.labels), source: `deploy/metric-names.json (planned: ${e.planned})` });
    } else {
      known.set(e.name, { type: e.type, labels: new Set(e.labels), source: 'deploy/metric-names.json' });
    }
  }
  return known;
}

// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS = ['job', 'instance'];

/** Problems with one reference, or none. */
function checkRef(ref: MetricRef, known: Map<string, Known>): string[] {
  let metric = known.get(ref.name);
  const extra: string[] = [];
  if (!metric) {
    // Histograms and summaries are queried through their series suffixes.
    const m = /^(.*)_(bucket|sum|count)$/.exec(ref.name);
    const base = m ? known.get(m[1]!) : undefined;
    if (base && (base.type === 'histogram' || (base.type === 'summary' && m![2] !== 'bucket'))) {
      metric = base;
      if (m![2] === 'bucket') extra.push('le');
    }
  }
  if (!metric) return [`unknown metric ${ref.name}`];
  const allowed = new Set([...metric.labels, ...TARGET_LABELS, ...extra]);
  return ref.labels
    .filter((l) => !allowed.has(l))
    .map((l) => `${ref.name} has no label "${l}" (it has: ${[...metric!.labels].join(', ') || 'none'}; per ${metric!.source})`);
}

interface Query {
  where: string;
  expr: string;
}

/** Every query of a dashboard: panel targets (rows nested or not), template variables, annotations. */
function dashboardQueries(dash: Record<string, unknown>): Query[] {
  const out: Query[] = [];
  const walk = (panels: unknown[] | undefined): void => {
    for (const p of (panels ?? []) as Array<{ title?: string; type?: string; targets?: Array<{ expr?: string; refId?: string }>; panels?: unknown[] }>) {
      for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId ?? ''}`, expr: t.expr ?? '' });
      walk(p.panels);
    }
  };
  walk(dash.panels as unknown[]);
  const templating = (dash.templating as { list?: Array<{ name: string; type: string; query?: string | { query?: string } }> } | undefined)?.list ?? [];
  for (const v of templating) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    out.push({ where: `variable $${v.name}`, expr: q });
  }
  const annotations = (dash.annotations as { list?: Array<{ name: string; expr?: string }> } | undefined)?.list ?? [];
  for (const a of annotations) if (a.expr) out.push({ where: `annotation "${a.name}"`, expr: a.expr });
  return out;
}

/** Every expression of a rules file: rule expressions and `query` calls in annotations. */
function ruleQueries(rules: {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string; annotations?: Record<string, string> }> }>;
}): Query[] {
  const out: Query[] = [];
  for (const g of rules.groups) {
    for (const r of g.rules) {
      const where = `rule ${r.alert ?? r.record} (${g.name})`;
      out.push({ where, expr: String(r.expr) });
      for (const q of annotationQueries(r.annotations)) out.push({ where: `${where} annotation`, expr: q });
    }
  }
  return out;
}

/** Problems across a list of queries; a query that names no metric is a problem too (the extractor missed it, or the panel is empty). */
function problems(queries: Query[], known: Map<string, Known>): string[] {
  return queries.flatMap((q) => {
    const refs = metricRefs(q.expr);
    if (refs.length === 0) return [`${q.where}: no metric found in ${JSON.stringify(q.expr)}`];
    return refs.flatMap((r) => checkRef(r, known).map((p) => `${q.where}: ${p}`));
  });
}

const registry = apiRegistry();
const known = knownMetrics(registry);
const dashboard = JSON.parse(readFileSync(file('grafana/orch-migrate.json'), 'utf8')) as Record<string, unknown>;
const rules = parseYaml(readFileSync(file('prometheus/orch-migrate.rules.yml'), 'utf8')) as Parameters<typeof ruleQueries>[0];

describe('PromQL metric extraction (test/helpers/promql-names.ts)', () => {
  it('finds metrics and matcher labels, and nothing else', () => {
    expect(
      metricRefs('sum by (job, le) (rate(foo_seconds_bucket{route!~"/a|/b", job=~"$job"}[$__rate_interval])) / on (job) group_left(phase) bar == 1'),
    ).toEqual([
      { name: 'foo_seconds_bucket', labels: ['route', 'job'] },
      { name: 'bar', labels: [] },
    ]);
    expect(metricRefs('histogram_quantile(0.99, sum without (instance) (rate(x_total[5m] offset 1h))) > bool 2 and max(y) unless z{a="1"}')).toEqual([
      { name: 'x_total', labels: [] },
      { name: 'y', labels: [] },
      { name: 'z', labels: ['a'] },
    ]);
    expect(metricRefs('changes(max(e)[2m:]) > 0')).toEqual([{ name: 'e', labels: [] }]);
    expect(metricRefs('{__name__="n", k="v"}')).toEqual([{ name: 'n', labels: ['k'] }]);
    expect(metricRefs('label_values(orch_api_requests_total{route="/x"}, job)')).toEqual([{ name: 'orch_api_requests_total', labels: ['route'] }]);
    expect(metricRefs('label_values(job)')).toEqual([]);
    expect(metricRefs('time() - max(t_seconds)')).toEqual([{ name: 't_seconds', labels: [] }]);
  });

  it('reports an unknown metric, and a label the metric does not have', () => {
    const bogus: Query[] = [
      { where: 'panel "typo"', expr: 'sum(rate(orch_api_request_total[5m]))' },
      { where: 'panel "label"', expr: 'sum(rate(orch_api_requests_total{status="500"}[5m]))' },
      { where: 'panel "ok"', expr: 'histogram_quantile(0.9, sum by (le) (rate(orch_api_request_duration_seconds_bucket{le="1"}[5m])))' },
    ];
    expect(problems(bogus, known)).toEqual([
      'panel "typo": unknown metric orch_api_request_total',
      'panel "label": orch_api_requests_total has no label "status" (it has: method, route, status_code, read_path; per src/api/metrics.ts)',
    ]);
  });
});

describe('deploy/metric-names.json', () => {
  it('lists each name once, with a known component, and an api name only as registered (or planned, and then not registered yet)', () => {
    expect(new Set(names.map((n) => n.name)).size).toBe(names.length);
    for (const e of names) {
      expect(['api', 'cli', 'prometheus'], e.name).toContain(e.component);
      if (e.component !== 'api') continue;
      const r = registry.get(e.name);
      if (!r) {
        expect(e.planned, `${e.name} is listed as api but src/api/metrics.ts does not register it`).toBeTruthy();
        continue;
      }
      expect(e.planned, `${e.name} is registered by src/api/metrics.ts: drop its "planned" flag`).toBeUndefined();
      expect(r.type, e.name).toBe(e.type);
      expect([...r.labels].sort(), e.name).toEqual([...e.labels].sort());
    }
  });
});

describe('deploy/grafana/orch-migrate.json', () => {
  const queries = dashboardQueries(dashboard);

  it('every panel query, variable and annotation uses known metrics and labels', () => {
    expect(queries.length).toBeGreaterThan(30);
    expect(problems(queries, known)).toEqual([]);
  });

  it('every panel has a query, a unique id, a place on the grid and the datasource variable', () => {
    const panels =
      (dashboard.panels as Array<{ id: number; type: string; title: string; gridPos?: unknown; datasource?: { uid?: string }; targets?: unknown[] }>) ?? [];
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const p of panels) {
      expect(p.gridPos, p.title).toBeDefined();
      if (p.type === 'row') continue;
      expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
      expect(p.datasource?.uid, p.title).toBe('${datasource}');
    }
  });

  it('shows every api metric the rules alert on, and the run metrics of the CLI', () => {
    const onDashboard = new Set(queries.flatMap((q) => metricRefs(q.expr).map((r) => r.name.replace(/_(bucket|sum|count)$/, ''))));
    const inRules = new Set(ruleQueries(rules).flatMap((q) => metricRefs(q.expr).map((r) => r.name.replace(/_(bucket|sum|count)$/, ''))));
    for (const n of inRules) expect(onDashboard, `${n} is alerted on but not on the dashboard`).toContain(n);
    for (const e of names.filter((x) => x.component === 'cli')) expect(onDashboard, e.name).toContain(e.name);
  });
});

describe('deploy/prometheus/orch-migrate.rules.yml', () => {
  const queries = ruleQueries(rules);

  it('every rule expression and annotation query uses known metrics and labels', () => {
    expect(queries.length).toBeGreaterThanOrEqual(12);
    expect(problems(queries, known)).toEqual([]);
  });

  it('has the alerts an SRE needs, each with a severity, a summary and a description', () => {
    const alerts = rules.groups.flatMap((g) => g.rules as Array<{ alert?: string; labels?: Record<string, string>; annotations?: Record<string, string> }>);
    expect(alerts.map((a) => a.alert)).toEqual(
      expect.arrayContaining([
        'OrchApiHigh5xxRate',
        'OrchApiHighLatencyP99',
        'OrchMirrorWriteFailures',
        'OrchApiCursorRejectionsSpike',
        'OrchApiNotReady',
        'OrchMigrationVerifyNotOk',
        'OrchMigrationCheckpointStalled',
        'OrchMigrationPhaseChanged',
      ]),
    );
    for (const a of alerts) {
      expect(['critical', 'warning', 'info'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.description, a.alert).toBeTruthy();
    }
  });
});

/**
 * Prints one plain closing line, "N passed, N failed, N skipped", after the
 * default reporter, so CI logs state the count in a form any reader parses.
 *
 * Under CI=true a skipped test fails the run: CI installs everything the tests
 * need (.ci/run), so a skip there means a check silently did not run. The
 * reporter names each skipped test with its reason and sets a failing exit code.
 */
import type { Reporter, TestModule } from 'vitest/node';

/** The counts, and what to say about skips. */
export interface Summary {
  passed: number;
  failed: number;
  skipped: number;
  /** "file > test: reason" for every skipped test. */
  skippedTests: string[];
  /** Set when the run must fail because of skips. */
  failure: string | null;
}

/** Counts the results; `ci` is whether skips fail the run. */
export function summarize(testModules: ReadonlyArray<TestModule>, ci: boolean): Summary {
  const s: Summary = { passed: 0, failed: 0, skipped: 0, skippedTests: [], failure: null };
  for (const m of testModules) {
    for (const t of m.children.allTests()) {
      const result = t.result();
      if (result.state === 'passed') s.passed++;
      else if (result.state === 'failed') s.failed++;
      else {
        s.skipped++;
        const note = result.state === 'skipped' && result.note ? result.note : result.state;
        s.skippedTests.push(`${m.relativeModuleId} > ${t.fullName}: ${note}`);
      }
    }
  }
  if (ci && s.skipped > 0) {
    s.failure = `CI=true: ${s.skipped} test(s) skipped, and a skipped test is a check that did not run. Install what each one needs (.ci/run does) or remove the skip:`;
  }
  return s;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const s = summarize(testModules, process.env.CI === 'true');
    if (s.failure) {
      process.stdout.write(`\n${s.failure}\n${s.skippedTests.map((t) => `  - ${t}`).join('\n')}\n`);
      process.exitCode = 1;
    }
    process.stdout.write(`\n${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped\n`);
  }
}

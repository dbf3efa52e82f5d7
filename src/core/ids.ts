/**
 * Identifier rules (docs/design.md "Key layout"). Both are full-match patterns: an id that passes
 * contains no colon and no glob character, so it is safe inside a key and inside
 * a SCAN MATCH pattern.
 */
import { z } from 'zod';
import { ValidationError } from './errors.js';

/** `^[a-z0-9][a-z0-9_-]{0,31}$`, matched in full. */
export const WORKSPACE_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,31}$/;
/** `^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`, matched in full. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

const WORKSPACE_RULE = 'a workspace id is 1-32 characters of a-z, 0-9, "_" or "-", starting with a letter or digit';
const JOB_RULE = 'a job id is 1-128 characters of A-Z, a-z, 0-9, "_", "." or "-", starting with a letter or digit';

/** Full match: the whole string, never a prefix or a line of it. */
function fullMatch(pattern: RegExp, value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const m = pattern.exec(value);
  return m !== null && m.index === 0 && m[0].length === value.length;
}

/** True when `value` is a valid workspace id. */
export function isWorkspaceId(value: unknown): value is string {
  return fullMatch(WORKSPACE_ID_PATTERN, value);
}

/** True when `value` is a valid job id. */
export function isJobId(value: unknown): value is string {
  return fullMatch(JOB_ID_PATTERN, value);
}

/** Printable, bounded rendering of untrusted input for error messages. */
export function describeInput(value: unknown): string {
  const s = typeof value === 'string' ? value : String(value);
  const clipped = s.length > 40 ? `${s.slice(0, 40)}…` : s;
  return JSON.stringify(clipped);
}

/** Throws a {@link ValidationError} that says what is allowed. */
export function assertWorkspaceId(value: unknown): asserts value is string {
  if (!isWorkspaceId(value)) {
    throw new ValidationError(`Invalid workspace id ${describeInput(value)}: ${WORKSPACE_RULE}`, {
      suggestion: 'Pass a workspace id such as "acme" or "team-7".',
    });
  }
}

/** Throws a {@link ValidationError} that says what is allowed. */
export function assertJobId(value: unknown): asserts value is string {
  if (!isJobId(value)) {
    throw new ValidationError(`Invalid job id ${describeInput(value)}: ${JOB_RULE}`, {
      suggestion: 'Pass a job id such as "job_123" or "2026-01-01.a".',
    });
  }
}

/** zod schema for a workspace id (full match). */
export const WorkspaceIdSchema = z.string().refine(isWorkspaceId, { message: WORKSPACE_RULE });
/** zod schema for a job id (full match). */
export const JobIdSchema = z.string().refine(isJobId, { message: JOB_RULE });

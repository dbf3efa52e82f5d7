/**
 * A private PKI made with openssl in a temp dir, for the TLS tests: a CA, a
 * second CA nobody trusts, server certificates (a good one for 127.0.0.1 and
 * localhost, one that names another host, one that has expired) and client
 * certificates (one from the trusted CA, one from the other CA).
 *
 * Validity periods are set with `openssl ca -startdate/-enddate`, so the
 * expired certificate is expired by years, not by a second that a slow
 * machine could blur; the valid ones start a day in the past for the same reason.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The files of one issued certificate. */
export interface IssuedCert {
  certFile: string;
  keyFile: string;
}

/** Everything the TLS tests use. */
export interface TestPki {
  dir: string;
  /** The CA the servers and clients trust. */
  caFile: string;
  /** A CA nobody trusts. */
  otherCaFile: string;
  /** SAN IP:127.0.0.1, DNS:localhost. */
  server: IssuedCert;
  /** SAN DNS:redis.internal only: wrong for 127.0.0.1, right with --tls-servername redis.internal. */
  serverOtherName: IssuedCert;
  /** SAN IP:127.0.0.1, DNS:localhost, valid in January 2020 only. */
  serverExpired: IssuedCert;
  /** Client certificate from the trusted CA. */
  client: IssuedCert;
  /** Client certificate from the other CA. */
  clientUntrusted: IssuedCert;
  remove(): Promise<void>;
}

const OPENSSL = process.env.OPENSSL_BIN ?? 'openssl';

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run(OPENSSL, args, { cwd, timeout: 30_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`, { cause: err });
  }
}

/** YYYYMMDDHHMMSSZ, as `openssl ca -startdate` takes it. */
function asn1Time(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

async function makeCa(dir: string, name: string): Promise<{ cert: string; key: string; cnf: string }> {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.pem`);
  await openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '3650', '-subj', `/CN=${name}`],
    dir,
  );
  const db = path.join(dir, `${name}-db`);
  await writeFile(`${db}.index`, '');
  await writeFile(`${db}.serial`, '1000\n');
  const cnf = path.join(dir, `${name}.cnf`);
  await writeFile(
    cnf,
    [
      '[ ca ]',
      'default_ca = this_ca',
      '[ this_ca ]',
      `database = ${db}.index`,
      `serial = ${db}.serial`,
      `new_certs_dir = ${dir}`,
      'default_md = sha256',
      'policy = any_name',
      'unique_subject = no',
      'copy_extensions = none',
      '[ any_name ]',
      'commonName = supplied',
      '[ server_local ]',
      'subjectAltName = IP:127.0.0.1, DNS:localhost',
      'extendedKeyUsage = serverAuth',
      '[ server_other ]',
      'subjectAltName = DNS:redis.internal',
      'extendedKeyUsage = serverAuth',
      '[ client ]',
      'extendedKeyUsage = clientAuth',
      '',
    ].join('\n'),
  );
  return { cert, key, cnf };
}

async function issue(
  dir: string,
  ca: { cert: string; key: string; cnf: string },
  name: string,
  cn: string,
  ext: string,
  start: Date,
  end: Date,
): Promise<IssuedCert> {
  const keyFile = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const certFile = path.join(dir, `${name}.pem`);
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${cn}`], dir);
  await openssl(
    [
      'ca',
      '-batch',
      '-notext',
      '-config',
      ca.cnf,
      '-cert',
      ca.cert,
      '-keyfile',
      ca.key,
      '-in',
      csr,
      '-out',
      certFile,
      '-extensions',
      ext,
      '-startdate',
      asn1Time(start),
      '-enddate',
      asn1Time(end),
    ],
    dir,
  );
  return { certFile, keyFile };
}

/** Creates the PKI in a fresh temp dir; `remove()` deletes it. */
export async function createTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'orch-tls-'));
  try {
    const [ca, other] = await Promise.all([makeCa(dir, 'ca'), makeCa(dir, 'other-ca')]);
    const day = 86_400_000;
    const from = new Date(Date.now() - day);
    const to = new Date(Date.now() + 365 * day);
    // One CA database is not safe for parallel `openssl ca` runs: issue one after the other.
    const server = await issue(dir, ca, 'server', 'redis-test', 'server_local', from, to);
    const serverOtherName = await issue(dir, ca, 'server-other', 'redis.internal', 'server_other', from, to);
    const serverExpired = await issue(
      dir,
      ca,
      'server-expired',
      'redis-expired',
      'server_local',
      new Date(Date.UTC(2020, 0, 1)),
      new Date(Date.UTC(2020, 1, 1)),
    );
    const client = await issue(dir, ca, 'client', 'orch-client', 'client', from, to);
    const clientUntrusted = await issue(dir, other, 'client-untrusted', 'stranger', 'client', from, to);
    return {
      dir,
      caFile: ca.cert,
      otherCaFile: other.cert,
      server,
      serverOtherName,
      serverExpired,
      client,
      clientUntrusted,
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

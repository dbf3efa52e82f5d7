/**
 * TLS to Redis with a private CA and, optionally, a client certificate.
 *
 * Two jobs:
 *  - {@link loadTlsOptions} reads and checks the files before any connection
 *    is tried, so a wrong path, a file that holds no certificate, a key that
 *    does not belong to the certificate or an expired client certificate is a
 *    config error (exit 2) naming the setting, never a handshake failure later.
 *  - {@link classifyTlsError} turns a failed handshake into a
 *    {@link TlsCertificateError} (exit 2) whose suggestion names the option that
 *    fixes it: an untrusted server certificate is not "unreachable".
 *
 * Certificate checks are never switched off: there is no "insecure" option.
 * Messages name paths and certificate subjects, never key material.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { ConfigError, TlsCertificateError } from './errors.js';

/** The TLS settings (file paths and the server name to verify). */
export interface TlsSettings {
  /** PEM file of the CA(s) that signed the server's certificate (a private CA). */
  caFile?: string | null;
  /** PEM client certificate, for servers with `tls-auth-clients yes`. */
  certFile?: string | null;
  /** PEM private key of the client certificate (unencrypted). */
  keyFile?: string | null;
  /** Host name the server's certificate must name, when it differs from the host connected to. */
  servername?: string | null;
}

/**
 * How each setting is spelled as a CLI option and as an environment variable.
 * Messages name both, so one text fits the CLI and the API.
 */
export const TLS_SETTING_NAMES = {
  caFile: { flag: '--tls-ca-file', env: 'ORCH_TLS_CA_FILE' },
  certFile: { flag: '--tls-cert-file', env: 'ORCH_TLS_CERT_FILE' },
  keyFile: { flag: '--tls-key-file', env: 'ORCH_TLS_KEY_FILE' },
  servername: { flag: '--tls-servername', env: 'ORCH_TLS_SERVERNAME' },
} as const;
export type TlsSettingName = keyof typeof TLS_SETTING_NAMES;

/** `--tls-ca-file (ORCH_TLS_CA_FILE)`. */
export function tlsSettingLabel(name: TlsSettingName): string {
  const n = TLS_SETTING_NAMES[name];
  return `${n.flag} (${n.env})`;
}

/** A DNS host name (full match): what SNI and certificate names carry. */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** True when `value` is a valid `--tls-servername`: a host name, not an IP address (SNI carries names only). */
export function isServername(value: string): boolean {
  return isIP(value) === 0 && HOST_NAME.test(value);
}

/** True when any TLS setting is given. */
export function hasTlsSettings(s: TlsSettings | null | undefined): boolean {
  return !!s && [s.caFile, s.certFile, s.keyFile, s.servername].some((v) => typeof v === 'string' && v !== '');
}

/** The first TLS setting that is set, for "X is set but …" messages. */
export function firstTlsSetting(s: TlsSettings | null | undefined): TlsSettingName | null {
  if (!s) return null;
  for (const k of Object.keys(TLS_SETTING_NAMES) as TlsSettingName[]) if (typeof s[k] === 'string' && s[k] !== '') return k;
  return null;
}

function readSetting(name: TlsSettingName, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`Cannot read ${tlsSettingLabel(name)} ${JSON.stringify(path)}: ${code}`, {
      code: 'ERR_TLS_FILE',
      cause,
      suggestion: `Point ${TLS_SETTING_NAMES[name].flag} at a readable PEM file.`,
    });
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM file; a file without one (or with a broken one) is a config error naming the setting. */
function parseCertificates(name: TlsSettingName, path: string, pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    throw new ConfigError(`${tlsSettingLabel(name)} ${JSON.stringify(path)} holds no PEM certificate`, {
      code: 'ERR_TLS_FILE',
      suggestion: 'Use a PEM file with "-----BEGIN CERTIFICATE-----" blocks (convert DER with `openssl x509 -inform der -in f.der -out f.pem`).',
    });
  }
  return blocks.map((b) => {
    try {
      return new X509Certificate(b);
    } catch (cause) {
      throw new ConfigError(`${tlsSettingLabel(name)} ${JSON.stringify(path)} holds a certificate that cannot be parsed`, {
        code: 'ERR_TLS_FILE',
        cause,
        suggestion: 'Check the file with `openssl x509 -in <file> -noout -text`.',
      });
    }
  });
}

function parseKey(path: string, pem: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (cause) {
    const encrypted = /ENCRYPTED/.test(pem);
    throw new ConfigError(
      `${tlsSettingLabel('keyFile')} ${JSON.stringify(path)} ${encrypted ? 'is an encrypted private key' : 'holds no usable PEM private key'}`,
      {
        code: 'ERR_TLS_FILE',
        cause,
        suggestion: encrypted
          ? 'Encrypted keys are not supported: store the key unencrypted with tight file permissions (`openssl pkey -in key.pem -out key-plain.pem`).'
          : 'Use the PEM private key that belongs to --tls-cert-file ("-----BEGIN PRIVATE KEY-----").',
      },
    );
  }
}

/** A certificate's subject on one line, for messages (no key material in it). */
function subjectOf(cert: X509Certificate): string {
  return cert.subject.replace(/\n/g, ', ');
}

/**
 * Reads and checks the TLS files, and returns the options for `tls.connect`.
 * Throws a {@link ConfigError} (exit 2) naming the setting on any problem:
 * unreadable file, no certificate in it, a client certificate without its key
 * (or the reverse), a key that does not match, a client certificate outside
 * its validity period, a server name that is not a host name.
 */
export function loadTlsOptions(settings: TlsSettings | null | undefined, now: Date = new Date()): ConnectionOptions {
  const s = settings ?? {};
  const out: ConnectionOptions = {};
  if (s.caFile) {
    const pem = readSetting('caFile', s.caFile);
    parseCertificates('caFile', s.caFile, pem);
    // Node then trusts exactly these CAs for this connection (not the system store).
    out.ca = pem;
  }
  if (!!s.certFile !== !!s.keyFile) {
    const missing: TlsSettingName = s.certFile ? 'keyFile' : 'certFile';
    const given: TlsSettingName = s.certFile ? 'certFile' : 'keyFile';
    throw new ConfigError(`${tlsSettingLabel(given)} is set without ${tlsSettingLabel(missing)}`, {
      code: 'ERR_TLS_FILE',
      suggestion: 'A client certificate needs its private key: pass both --tls-cert-file and --tls-key-file.',
    });
  }
  if (s.certFile && s.keyFile) {
    const certPem = readSetting('certFile', s.certFile);
    const [cert] = parseCertificates('certFile', s.certFile, certPem);
    const keyPem = readSetting('keyFile', s.keyFile);
    const key = parseKey(s.keyFile, keyPem);
    if (!cert!.checkPrivateKey(key)) {
      throw new ConfigError(
        `${tlsSettingLabel('keyFile')} ${JSON.stringify(s.keyFile)} is not the private key of the certificate in ${tlsSettingLabel('certFile')} (${subjectOf(cert!)})`,
        {
          code: 'ERR_TLS_FILE',
          suggestion:
            'Pass the key that was generated with this certificate (compare `openssl x509 -noout -pubkey -in cert.pem` with `openssl pkey -pubout -in key.pem`).',
        },
      );
    }
    // Checked here because the server's answer to an expired client certificate is only an alert.
    const notAfter = new Date(cert!.validTo);
    const notBefore = new Date(cert!.validFrom);
    if (notAfter.getTime() < now.getTime()) {
      throw new ConfigError(`The client certificate in ${tlsSettingLabel('certFile')} (${subjectOf(cert!)}) expired on ${notAfter.toISOString()}`, {
        code: 'ERR_TLS_CLIENT_CERT_EXPIRED',
        suggestion: 'Issue a new client certificate from the CA the server trusts and point --tls-cert-file/--tls-key-file at it.',
      });
    }
    if (notBefore.getTime() > now.getTime()) {
      throw new ConfigError(`The client certificate in ${tlsSettingLabel('certFile')} (${subjectOf(cert!)}) is not valid before ${notBefore.toISOString()}`, {
        code: 'ERR_TLS_CLIENT_CERT_NOT_YET_VALID',
        suggestion: "Check this machine's clock, or use a certificate that is valid now.",
      });
    }
    out.cert = certPem;
    out.key = keyPem;
  }
  if (s.servername) {
    if (!isServername(s.servername)) {
      throw new ConfigError(`${tlsSettingLabel('servername')} must be a host name, got ${JSON.stringify(s.servername.slice(0, 64))}`, {
        code: 'ERR_TLS_SERVERNAME',
        suggestion: 'Give a DNS name the server certificate holds (an IP address is checked against the host you connect to, not through SNI).',
      });
    }
    out.servername = s.servername;
  }
  return out;
}

/** OpenSSL verification codes that mean "the server's certificate chain is not trusted". */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
]);

/** Alerts a server sends when it refuses our client certificate (or that we sent none). */
const CLIENT_CERT_ALERT =
  /ALERT_(CERTIFICATE_REQUIRED|UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED|HANDSHAKE_FAILURE)$/;

/** The first error in the chain (cause, a cluster's last node error) that carries a TLS or verification code. */
function tlsCoded(err: unknown): { code: string; message: string; error: Error } | null {
  let cur: unknown = err;
  for (let i = 0; i < 8 && cur instanceof Error; i++) {
    const code = (cur as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && (UNTRUSTED.has(code) || /^(CERT_|ERR_TLS_|ERR_SSL_|ERR_OSSL_)/.test(code)))
      return { code, message: cur.message, error: cur };
    const lastNodeError = (cur as { lastNodeError?: unknown }).lastNodeError;
    if (lastNodeError instanceof Error) {
      const inner = tlsCoded(lastNodeError);
      if (inner) return inner;
    }
    cur = cur.cause;
  }
  return null;
}

/** What the connection knew when the handshake failed. */
export interface TlsFailureContext {
  /** `host:port` (or the sentinel target) for the message. */
  address: string;
  settings: TlsSettings | null | undefined;
  /** The TLS handshake completed before the connection failed. */
  handshakeCompleted?: boolean;
}

/**
 * Maps a failed TLS connection to a {@link TlsCertificateError} naming the
 * option that fixes it, or null when the failure is not about certificates
 * (a refused or dropped connection stays "unreachable", exit 5).
 */
export function classifyTlsError(err: unknown, ctx: TlsFailureContext): TlsCertificateError | null {
  const s = ctx.settings ?? {};
  const coded = tlsCoded(err);
  const at = `TLS to Redis at ${ctx.address} failed`;
  if (coded) {
    const detail = coded.message
      .split('\n')[0]!
      .replace(/^[0-9A-F]+:error:[0-9A-F]+:/, '')
      .slice(0, 200);
    if (UNTRUSTED.has(coded.code)) {
      return new TlsCertificateError(ctx.address, `${at}: the server's certificate is not trusted (${detail})`, {
        cause: err,
        suggestion: s.caFile
          ? `The CA in ${tlsSettingLabel('caFile')} ${JSON.stringify(s.caFile)} did not sign the server's certificate: pass the CA (or chain) that did.`
          : `Pass the CA that signed the server's certificate with ${tlsSettingLabel('caFile')} <ca.pem>.`,
      });
    }
    if (coded.code === 'CERT_HAS_EXPIRED') {
      return new TlsCertificateError(ctx.address, `${at}: the server's certificate has expired (${detail})`, {
        cause: err,
        suggestion:
          "Renew the server's certificate (tls-cert-file in redis.conf) or connect to a server whose certificate is current; no option of this tool skips certificate checks.",
      });
    }
    if (coded.code === 'CERT_NOT_YET_VALID') {
      return new TlsCertificateError(ctx.address, `${at}: the server's certificate is not valid yet (${detail})`, {
        cause: err,
        suggestion: "Check this machine's clock (and the server's certificate dates: `openssl s_client -connect host:port`).",
      });
    }
    if (coded.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      // Node attaches the peer certificate to this error: its names say what to pass.
      const san = (coded.error as { cert?: { subjectaltname?: unknown } }).cert?.subjectaltname;
      const names = typeof san === 'string' && san !== '' ? san : /cert's (?:altnames|list): (.*)$/m.exec(coded.message)?.[1]?.trim();
      return new TlsCertificateError(ctx.address, `${at}: the server's certificate names another host (${detail.slice(0, 160)})`, {
        cause: err,
        suggestion: s.servername
          ? `${tlsSettingLabel('servername')} ${JSON.stringify(s.servername)} is not a name in the certificate${names ? ` (${names})` : ''}: pass one it holds.`
          : `Connect by a name the certificate holds, or pass it with ${tlsSettingLabel('servername')} <name>${names ? ` (the certificate holds ${names})` : ''}.`,
      });
    }
    if (coded.code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH') {
      return new TlsCertificateError(ctx.address, `${at}: ${tlsSettingLabel('keyFile')} is not the key of ${tlsSettingLabel('certFile')}`, {
        cause: err,
        suggestion: 'Pass the private key that belongs to the client certificate.',
      });
    }
    if (CLIENT_CERT_ALERT.test(coded.code)) {
      const required = /CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE/.test(coded.code) && !s.certFile;
      return new TlsCertificateError(
        ctx.address,
        `${at}: the server refused ${s.certFile ? 'our client certificate' : 'the connection without a client certificate'} (${detail})`,
        {
          cause: err,
          suggestion:
            required || !s.certFile
              ? `The server requires a client certificate (tls-auth-clients yes): pass ${tlsSettingLabel('certFile')} and ${tlsSettingLabel('keyFile')}.`
              : `The server does not accept the client certificate in ${tlsSettingLabel('certFile')}: use one signed by a CA in the server's tls-ca-cert-file, and current.`,
        },
      );
    }
    if (/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|UNKNOWN_PROTOCOL|HTTP_REQUEST/.test(coded.code)) {
      return new TlsCertificateError(ctx.address, `${at}: the server does not speak TLS on this port (${detail})`, {
        cause: err,
        suggestion: 'Use the TLS port of the server (tls-port), or the redis:// scheme for a plain port.',
      });
    }
    return null;
  }
  // The server closes the socket right after a TLS 1.3 handshake when it wants a
  // client certificate and got none; the client often sees only the reset.
  if (ctx.handshakeCompleted && !s.certFile && err instanceof Error && /ECONNRESET|socket hang up|Connection is closed/i.test(err.message)) {
    return new TlsCertificateError(
      ctx.address,
      `${at}: the server closed the connection right after the TLS handshake, which is what a server with tls-auth-clients yes does without a client certificate`,
      {
        cause: err,
        suggestion: `Pass a client certificate signed by a CA the server trusts: ${tlsSettingLabel('certFile')} and ${tlsSettingLabel('keyFile')}.`,
      },
    );
  }
  return null;
}

import { connect } from "node:tls";

/** When a TLS endpoint's leaf certificate stops being valid. */
export interface CertificateExpiry {
  notAfter: number;
  daysLeft: number;
}

/**
 * Read the expiry of the certificate an https URL presents. The chain is not verified here (the
 * probe itself reports an untrusted certificate); the point is to warn before expiry, whatever
 * the trust path. Resolves `undefined` for http URLs or when no certificate could be read.
 *
 * @example
 * const exp = await readCertificateExpiry("https://mcp.example.com/mcp");
 * if (exp && exp.daysLeft < 14) warn(exp);
 */
export function readCertificateExpiry(
  url: string,
  options: { timeoutMs?: number; now?: number } = {},
): Promise<CertificateExpiry | undefined> {
  const u = new URL(url);
  if (u.protocol !== "https:") return Promise.resolve(undefined);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const port = u.port ? Number(u.port) : 443;
  return new Promise((resolve) => {
    const socket = connect({
      host,
      port,
      servername: /^[\d.]+$|:/.test(host) ? undefined : host,
      rejectUnauthorized: false,
    });
    const done = (value: CertificateExpiry | undefined) => {
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(options.timeoutMs ?? 10_000, () => done(undefined));
    socket.once("error", () => done(undefined));
    socket.once("secureConnect", () => {
      const cert = socket.getPeerCertificate();
      const notAfter = cert?.valid_to ? Date.parse(cert.valid_to) : Number.NaN;
      if (!Number.isFinite(notAfter)) return done(undefined);
      const now = options.now ?? Date.now();
      done({ notAfter, daysLeft: Math.floor((notAfter - now) / 86_400_000) });
    });
  });
}

// Package pebbledev runs a real ACME server, Pebble
// (github.com/letsencrypt/pebble/v2, v2.10.3), inside the current process:
// for `pryv-tls demo --acme`, where an operator watches Strategy A (built-in
// ACME) obtain a certificate with no internet, and, through the thin
// wrapper acmetest, for pryv-tls's tests.
//
// Start wires Pebble's own ca, va, wfe and db packages the way its
// cmd/pebble does, serves the ACME API and the management API over TLS on
// 127.0.0.1 (with a throwaway listener certificate from devpki, not Pebble's
// bundled one, which expires on 2027-10-03), optionally starts a small DNS
// responder for Pebble's validation authority, and returns once the
// directory answers. Close tears everything down. Nothing listens on
// anything but 127.0.0.1. Failures are returned as errors.
//
// Typical use with lego:
//
//	p, err := pebbledev.Start(pebbledev.Options{Logger: log})
//	if err != nil { ... }
//	defer p.Close()
//	cfg := lego.NewConfig(user)
//	cfg.CADirURL = p.DirectoryURL // or directoryUrl + directoryCaFile: p.CAFile
//	cfg.HTTPClient = p.HTTPClient()
//	// serve HTTP-01 on 127.0.0.1:p.HTTPPort, order with a Profile named
//	// ("default", "shortlived" or "short120s"), verify against p.IssuerRoots().
//
// Checked with lego v5.6.0 (HTTP-01 Obtain, GetRenewalInfo, SetRenewalInfo):
// an HTTP-01 Obtain takes ~0.7 s with HTTPClient's Retry-After patch, ~3.8 s
// without it.
//
// # The process environment
//
// Pebble reads its PEBBLE_* environment variables when its constructors
// run, so Start sets them — with os.Setenv unless Options.Setenv says
// otherwise — and does not restore them: Start mutates the process
// environment. Start is therefore not for concurrent use (with another
// Start, or with anything else reading or writing the environment). A
// running Pebble's methods are safe for concurrent use. Start sets:
// PEBBLE_VA_NOSLEEP=1 (no random 0–5 s sleep before each validation),
// PEBBLE_VA_SLEEPTIME="", PEBBLE_WFE_NONCEREJECT=0 (Pebble otherwise
// rejects 5 % of good nonces as badNonce), PEBBLE_AUTHZREUSE=0 or 100
// (default 50 %: random reuse of valid authorizations; see
// Options.ReuseAuthz), PEBBLE_VA_ALWAYS_VALID (Options.AlwaysValid),
// PEBBLE_WFE_ORDERS_PER_PAGE="".
//
// # Pebble behaviour a client must know about
//
//   - An order that names no profile gets a RANDOM configured profile. Always
//     name one, or configure a single profile.
//   - A profile's validity is whole seconds; Pebble makes NotAfter =
//     NotBefore + validity − 1 s, and NotBefore is the issuance instant (no
//     backdating). ARI's suggested window is the two-thirds point ±24 h,
//     clipped to [NotBefore, NotAfter]: for a short profile (short120s) the
//     window is the whole lifetime, and an ARI client picks a random instant
//     in it (lego's ShouldRenewAt(now, 0) is then usually nil at first).
//     ARI answers always carry Retry-After: 6 h. To force a renewal now, move
//     the window into the past with SetRenewalInfo.
//   - Pebble sends no Retry-After on challenge POSTs; lego then waits 5 s
//     (±50 %) before its first authorization poll. HTTPClient adds
//     "Retry-After: 1" there unless Options.NoRetryAfter is set.
//   - Pebble's VA resolves names through Options.DNSServer or the built-in
//     responder (over TCP), queries AAAA before A and dials the first address
//     it gets on HTTPPort (HTTP-01) or TLSALPNPort (TLS-ALPN-01). It follows
//     no CNAME for DNS-01. It performs no CAA check.
//   - Pebble's answer to finalize carries no Location header: a client must
//     poll the order URL it already has (lego does; x/crypto/acme's
//     CreateOrderCert fails, its CreateCertFromOrder works).
//   - The management API's POST /set-renewal-info/ refuses requests without
//     a User-Agent (SetRenewalInfo sends one).
//   - Pebble checks no rate limits and keeps everything in memory: a new
//     Start is a new CA with new roots, accounts and certificates.
//   - Each Start leaks one idle goroutine (the VA's task loop, which Pebble
//     never stops); validations in flight at Close end within 15 s.
package pebbledev

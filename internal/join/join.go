package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb"
)

// Request is what a joining core sends (over mutual TLS with the node
// certificate from its bundle).
type Request struct {
	CoreID  string `json:"coreId"`
	Token   string `json:"token"`
	PeerURL string `json:"peerUrl"`
}

// Response tells the new member how to start its PlatformDB member.
type Response struct {
	InitialCluster string `json:"initialCluster"`
	MemberID       string `json:"memberId"`
}

// Membership is what the join endpoint needs of PlatformDB.
type Membership interface {
	AddLearner(ctx context.Context, name, peerURL string) (platformdb.Member, string, error)
	Promote(ctx context.Context, id uint64) error
}

// Server is the CA holder's join endpoint. It checks the token (one
// time, bound to the core id and to the node certificate issued with it),
// adds the core to PlatformDB as a learner, and promotes it to a voter once
// it has caught up.
type Server struct {
	Tokens  Tokens
	Members Membership
	Logger  *slog.Logger
	// Base is the context promotions run under (the daemon's lifetime).
	Base context.Context
	Now  func() time.Time
	// Renew, if set, answers POST /renew: a core presenting its current
	// node certificate (verified by TLS) gets a fresh one for the same key.
	Renew func(old *x509.Certificate) ([]byte, error)
	// Denied, if set, tells a revoked node certificate (PlatformDB's
	// denylist): refused by /join and /renew.
	Denied func(*x509.Certificate) bool
}

// ServerCert is the join listener's certificate (the CA holder's node
// certificate), read from an atomic pointer at each handshake: Reload after
// the node certificate is renewed, and the next handshake presents the new
// one.
type ServerCert struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// LoadServerCert reads the pair.
func LoadServerCert(certFile, keyFile string) (*ServerCert, error) {
	s := &ServerCert{certFile: certFile, keyFile: keyFile}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again; on error the previous pair stays.
func (s *ServerCert) Reload() error {
	c, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("join listener: %w", err)
	}
	s.cert.Store(&c)
	return nil
}

// Leaf is the certificate presented now.
func (s *ServerCert) Leaf() *x509.Certificate { return s.cert.Load().Leaf }

// GetCertificate is tls.Config's.
func (s *ServerCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert.Load(), nil
}

// TLSConfig is the join listener's: the CA holder's node certificate
// (cert), and only clients with a node certificate from the cluster CA.
func (s *ServerCert) TLSConfig(ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: s.GetCertificate,
		ClientCAs:      ca,
		ClientAuth:     tls.RequireAndVerifyClientCert,
	}
}

func (j *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/renew" && j.Renew != nil {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			joinError(w, http.StatusUnauthorized, ErrWrongNodeCert)
			return
		}
		old := r.TLS.PeerCertificates[0]
		if j.Denied != nil && j.Denied(old) {
			j.logger().Warn("node certificate renewal refused: revoked", "core", old.Subject.CommonName, "serial", platformdb.SerialHex(old), "from", r.RemoteAddr)
			joinError(w, http.StatusForbidden, ErrRevoked)
			return
		}
		pem, err := j.Renew(old)
		if err != nil {
			joinError(w, http.StatusForbidden, err)
			return
		}
		if b, _ := pemDecode(pem); b != nil && j.Tokens.KV != nil {
			n := NodeCertOf(old.Subject.CommonName, b, j.now())
			if err := j.Tokens.RecordNodeCert(r.Context(), n); err != nil {
				// Not recorded: remove-core could not deny it. Not served either.
				j.logger().Error("renewal: recording the new node certificate", "core", n.CoreID, "error", err.Error())
				joinError(w, http.StatusServiceUnavailable, fmt.Errorf("renewal: recording the new node certificate: %w", err))
				return
			}
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(pem)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/join" {
		http.Error(w, "POST /join", http.StatusNotFound)
		return
	}
	var req Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.CoreID == "" || req.PeerURL == "" {
		joinError(w, http.StatusBadRequest, errors.New("join refused: body must be JSON {coreId, token, peerUrl}"))
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		joinError(w, http.StatusUnauthorized, ErrWrongNodeCert)
		return
	}
	leaf := r.TLS.PeerCertificates[0]
	if j.Denied != nil && j.Denied(leaf) {
		j.logger().Warn("join refused: revoked node certificate", "core", req.CoreID, "from", r.RemoteAddr)
		joinError(w, http.StatusForbidden, ErrRevoked)
		return
	}
	if leaf.Subject.CommonName != req.CoreID {
		joinError(w, http.StatusForbidden, fmt.Errorf("join refused: the node certificate is for %q, not %q", leaf.Subject.CommonName, req.CoreID))
		return
	}
	now, log := j.now(), j.logger()
	t, rev, err := j.Tokens.Get(r.Context(), req.CoreID)
	if err == nil {
		err = t.check(req.Token, Fingerprint(leaf.Raw), req.PeerURL, now)
	}
	if err == nil && t.PeerURL != "" && t.PeerURL != req.PeerURL {
		err = fmt.Errorf("join refused: the bundle was made for peer URL %s, not %s", t.PeerURL, req.PeerURL)
	}
	if err == nil {
		err = j.Tokens.consume(r.Context(), t, rev, now)
	}
	if err != nil {
		log.Warn("join refused", "core", req.CoreID, "from", r.RemoteAddr, "reason", err.Error())
		joinError(w, http.StatusForbidden, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	m, initial, err := j.Members.AddLearner(ctx, req.CoreID, req.PeerURL)
	if err != nil {
		log.Error("join: adding the PlatformDB member", "core", req.CoreID, "error", err.Error())
		joinError(w, http.StatusServiceUnavailable, fmt.Errorf("join: adding the PlatformDB member: %w", err))
		return
	}
	log.Info("core joining: added as a PlatformDB learner", "core", req.CoreID, "peerUrl", req.PeerURL)
	base := j.Base
	if base == nil {
		base = context.Background()
	}
	if m.IsLearner {
		go func() {
			pctx, cancel := context.WithTimeout(base, 5*time.Minute)
			defer cancel()
			if err := j.Members.Promote(pctx, m.ID); err != nil {
				log.Error("join: promoting the learner to a voting member", "core", req.CoreID, "error", err.Error())
				return
			}
			log.Info("core joined: promoted to a voting PlatformDB member", "core", req.CoreID)
		}()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Response{InitialCluster: initial, MemberID: fmt.Sprintf("%x", m.ID)})
}

func (j *Server) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

func (j *Server) logger() *slog.Logger {
	if j.Logger != nil {
		return j.Logger
	}
	return slog.Default()
}

func pemDecode(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func joinError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Join calls the CA holder's join endpoint from a bundle: over TLS pinned to
// the bundle's CA (nothing else is trusted, whatever the system roots say),
// presenting the bundle's node certificate.
func Call(ctx context.Context, b *Bundle) (*Response, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(b.CACert)) {
		return nil, errors.New("join bundle: no CA certificate")
	}
	cert, err := tls.X509KeyPair([]byte(b.NodeCert), []byte(b.NodeKey))
	if err != nil {
		return nil, fmt.Errorf("join bundle: node certificate: %w", err)
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
	body, _ := json.Marshal(Request{CoreID: b.CoreID, Token: b.Token, PeerURL: b.PeerURL})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.JoinURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling the CA holder at %s: %w", b.JoinURL, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("the CA holder answered %s", resp.Status)
	}
	var jr Response
	if err := json.Unmarshal(data, &jr); err != nil || jr.InitialCluster == "" {
		return nil, fmt.Errorf("the CA holder's answer is not a join response: %s", data)
	}
	return &jr, nil
}

// RenewNodeCert asks the CA holder at joinURL's host for a fresh node
// certificate, authenticating with the current one (node's CertFile and
// KeyFile; its CAFile is the cluster CA), and returns it (PEM). The key does
// not change.
func RenewNodeCert(ctx context.Context, joinURL string, node platformdb.TLSFiles) ([]byte, error) {
	caFile, certFile, keyFile := node.CAFile, node.CertFile, node.KeyFile
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no CA certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(joinURL)
	if err != nil {
		return nil, err
	}
	u.Path = "/renew"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("renewing the node certificate at %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("renewing the node certificate: the CA holder answered %s: %s", resp.Status, body)
	}
	return body, nil
}

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/certstore"
	"github.com/pryv/pryv-tls/internal/devpki"
	"github.com/pryv/pryv-tls/internal/dnsdata"
)

// fakeRows answers the cores and users endpoints from memory.
type fakeRows struct {
	DNSRows // the other methods are not called
	cores   []dnsdata.CoreInfo
	users   [][2]string
}

func (f *fakeRows) Cores(context.Context) ([]dnsdata.CoreInfo, error) { return f.cores, nil }
func (f *fakeRows) Users(context.Context) ([][2]string, error)        { return f.users, nil }

func getStatus(t *testing.T, a *API) Status {
	t.Helper()
	code, body := do(t, a.Local(), http.MethodGet, "/status", nil, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /status: %d %s", code, body)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return st
}

func TestStatus(t *testing.T) {
	cat, _ := newCatalog(t)
	ctx := testCtx(t)
	ca := newCA(t)
	now := time.Now().UTC().Truncate(time.Second)
	good := issue(t, ca, devpki.Leaf{Names: []string{"good.example.com"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(80 * 24 * time.Hour)})
	if _, err := cat.Store(ctx, certstore.Input{Source: certstore.SourceACME, Chain: good.FullChain, Key: good.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	next := now.Add(50 * 24 * time.Hour)
	renewals := map[string]RenewalState{"good.example.com": {NextRenewal: next}}
	rows := &fakeRows{
		cores: []dnsdata.CoreInfo{{ID: "core1", URL: "https://core1.mc.example.com", Available: true}, {ID: "core2", Available: true}},
		users: [][2]string{{"alice", "core1"}, {"bob", "core1"}, {"carol", "core2"}},
	}
	members := map[string]bool{"core1": true, "core2": true, "core3": true}
	self := Self{ID: "core1", Renewer: true, CAHolder: true, PlatformDB: MemberState{Up: true, Leader: true}, TLS: true}
	a := &API{Certs: cat, DNS: rows, Logger: quietLogger(), Now: func() time.Time { return now },
		Renewals: func(context.Context) (map[string]RenewalState, error) { return renewals, nil },
		Members:  func(context.Context) (map[string]bool, error) { return members, nil },
		Self:     func(context.Context) Self { return self }}

	t.Run("healthy", func(t *testing.T) {
		st := getStatus(t, a)
		if len(st.Problems) != 0 {
			t.Fatalf("problems: %q", st.Problems)
		}
		if st.Core.ID != "core1" || !st.Core.Renewer || !st.Core.CAHolder || !st.Core.PlatformDB.Up || !st.Core.PlatformDB.Leader {
			t.Errorf("core: %+v", st.Core)
		}
		var ids []string
		for _, c := range st.Cores {
			ids = append(ids, c.ID)
			if !c.Member || !c.Healthy {
				t.Errorf("core %+v", c)
			}
		}
		// core3 is a member without a core-info row: listed all the same.
		if !slices.Equal(ids, []string{"core1", "core2", "core3"}) || st.Cores[0].UserCount != 2 {
			t.Errorf("cores: %+v", st.Cores)
		}
		if len(st.Certs) != 1 || st.Certs[0].DaysUntilExpiry != 80 {
			t.Errorf("certs: %+v", st.Certs)
		}
		if st.NextRenewal == nil || st.NextRenewal.Hostname != "good.example.com" || !st.NextRenewal.At.Equal(next) || st.LastError != nil {
			t.Errorf("nextRenewal %+v lastError %+v", st.NextRenewal, st.LastError)
		}
	})

	t.Run("needs attention", func(t *testing.T) {
		soon := issue(t, ca, devpki.Leaf{Names: []string{"soon.example.com"}, NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(3*24*time.Hour + time.Hour)})
		if _, err := cat.Store(ctx, certstore.Input{Source: certstore.SourceImport, Chain: soon.FullChain, Key: soon.KeyPEM}); err != nil {
			t.Fatal(err)
		}
		failedAt := now.Add(-time.Hour)
		renewals["failing.example.com"] = RenewalState{LastError: "Error creating new order :: too many certificates (rateLimited)", LastErrorAt: failedAt}
		members["core2"] = false
		self.Placeholder = false
		self.DNS.Active = true // and not serving
		defer func() {
			delete(renewals, "failing.example.com")
			members["core2"] = true
			self.DNS.Active = false
		}()
		st := getStatus(t, a)
		all := strings.Join(st.Problems, "\n")
		for _, want := range []string{"soon.example.com expires in 3 day(s)", "renewal of failing.example.com failed at " + failedAt.Format(time.RFC3339),
			"rateLimited", "core core2 is down", "DNS server is not serving"} {
			if !strings.Contains(all, want) {
				t.Errorf("problems lack %q:\n%s", want, all)
			}
		}
		if len(st.Problems) != 4 {
			t.Errorf("%d problems, want 4:\n%s", len(st.Problems), all)
		}
		if st.LastError == nil || st.LastError.Hostname != "failing.example.com" || !st.LastError.At.Equal(failedAt) {
			t.Errorf("lastError %+v", st.LastError)
		}
	})

	t.Run("store down", func(t *testing.T) {
		down := &API{Certs: fakeCerts{err: errors.New("no quorum")}, Logger: quietLogger(),
			Self: func(context.Context) Self { return Self{ID: "core1", TLS: true, Placeholder: true} }}
		st := getStatus(t, down)
		all := strings.Join(st.Problems, "\n")
		for _, want := range []string{"PlatformDB", "placeholder", "listing certificates: no quorum"} {
			if !strings.Contains(all, want) {
				t.Errorf("problems lack %q:\n%s", want, all)
			}
		}
	})
}

// Certificates are judged against their own lifetime: a fresh 6-day
// certificate is fine, an overdue renewal needs attention, a failure the
// renewer still retries in time is only a warning, a paused account is a
// problem that names its unpause link.
func TestStatusLifetime(t *testing.T) {
	cat, _ := newCatalog(t)
	ctx := testCtx(t)
	ca := newCA(t)
	now := time.Now().UTC().Truncate(time.Second)
	const day = 24 * time.Hour
	store := func(name string, notBefore time.Time, life time.Duration, source string) *devpki.Issued {
		iss := issue(t, ca, devpki.Leaf{Names: []string{name}, NotBefore: notBefore, NotAfter: notBefore.Add(life)})
		if _, err := cat.Store(ctx, certstore.Input{Source: source, Chain: iss.FullChain, Key: iss.KeyPEM}); err != nil {
			t.Fatal(err)
		}
		return iss
	}
	store("fresh.example.com", now.Add(-time.Hour), 6*day, certstore.SourceACME)       // 5 days left: fine
	store("late.example.com", now.Add(-5*day), 6*day, certstore.SourceACME)            // due at day 4, overdue at 4.6
	store("retrying.example.com", now.Add(-61*day), 90*day, certstore.SourceACME)      // due at 60, overdue at 69
	store("paused.example.com", now.Add(-10*day), 90*day, certstore.SourceACME)        // fine by the calendar
	ari := store("ari.example.com", now.Add(-61*day), 90*day, certstore.SourceACME)    // its window ended yesterday
	store("imported.example.com", now.Add(-2*day), 6*day, certstore.SourceImport)      // nothing renews it: 4 days left of 6, fine
	store("imported-soon.example.com", now.Add(-5*day), 6*day, certstore.SourceImport) // 1 day left: a third of 6 days
	failedAt := now.Add(-10 * time.Minute)
	renewals := map[string]RenewalState{
		"fresh.example.com": {NextRenewal: now.Add(-time.Hour).Add(4 * day)},
		"late.example.com":  {NextRenewal: now.Add(-day)},
		"retrying.example.com": {NextRenewal: now.Add(-day), LastError: "connection refused", LastErrorAt: failedAt,
			RenewalDetail: RenewalDetail{Failures: 3}},
		"paused.example.com": {NextRenewal: now.Add(50 * day), LastError: "Your account is temporarily prevented (rateLimited)", LastErrorAt: failedAt,
			RenewalDetail: RenewalDetail{Failures: 1, UnpauseURL: "https://portal.letsencrypt.org/sfe/v1/unpause?jwt=a.b.c",
				Problem: &Problem{Type: "urn:ietf:params:acme:error:rateLimited", Detail: "Your account is temporarily prevented", Status: 429}}},
		"ari.example.com": {NextRenewal: now.Add(-2 * day), RenewalDetail: RenewalDetail{ARIStart: now.Add(-3 * day), ARIEnd: now.Add(-day), ARISerial: serialOf(ari)}},
	}
	a := &API{Certs: cat, Logger: quietLogger(), Now: func() time.Time { return now },
		Renewals: func(context.Context) (map[string]RenewalState, error) { return renewals, nil },
		Self:     func(context.Context) Self { return Self{ID: "core1", PlatformDB: MemberState{Up: true}, TLS: true} }}

	st := getStatus(t, a)
	byName := map[string]CertInfo{}
	for _, c := range st.Certs {
		byName[c.Hostname] = c
	}
	for _, w := range []struct {
		name, state      string
		attention, renew bool
	}{
		{"fresh.example.com", "ok", false, true},
		{"late.example.com", "overdue", true, true},
		{"retrying.example.com", "due", false, true},
		{"paused.example.com", "ok", false, true},
		{"ari.example.com", "overdue", true, true},
		{"imported.example.com", "ok", false, false},
		{"imported-soon.example.com", "expiring", true, false},
	} {
		c := byName[w.name]
		if c.State != w.state || c.NeedsAttention != w.attention || c.Renewed != w.renew || c.AttentionAt == nil {
			t.Errorf("%s: state %q attention %v renewed %v attentionAt %v; want %q %v %v", w.name, c.State, c.NeedsAttention, c.Renewed, c.AttentionAt, w.state, w.attention, w.renew)
		}
	}
	if c := byName["ari.example.com"]; c.ARIWindow == nil || !c.ARIWindow.End.Equal(now.Add(-day)) {
		t.Errorf("ari.example.com: ARI window %+v", c.ARIWindow)
	}
	if c := byName["paused.example.com"]; c.Problem == nil || c.Problem.Status != 429 || c.UnpauseURL == "" {
		t.Errorf("paused.example.com: problem %+v unpause %q", c.Problem, c.UnpauseURL)
	}

	all := strings.Join(st.Problems, "\n")
	for _, want := range []string{
		"certificate late.example.com: its renewal is overdue",
		"certificate ari.example.com: its renewal is overdue (since " + now.Add(-day).Format(time.RFC3339) + ")",
		"certificate imported-soon.example.com expires in 1 day(s)",
		"renewal of paused.example.com is paused by the CA (too many failed validations) and is not retried: visit https://portal.letsencrypt.org/sfe/v1/unpause?jwt=a.b.c to unpause, then force a renewal (POST /system/admin/certs/force-renew {\"hostname\": \"paused.example.com\"})",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(st.Problems) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(st.Problems), all)
	}
	if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "renewal of retrying.example.com failed at "+failedAt.Format(time.RFC3339)+" (3 times in a row): connection refused; retried by the renewer, it needs attention if still failing at") {
		t.Errorf("warnings: %q", st.Warnings)
	}

	// A window for another certificate (the one before) is not this one's.
	r := renewals["ari.example.com"]
	r.ARISerial = "00ff"
	renewals["ari.example.com"] = r
	if c := findCert(getStatus(t, a), "ari.example.com"); c.ARIWindow != nil || c.State != "due" {
		t.Errorf("a window for another serial: %+v, state %q", c.ARIWindow, c.State)
	}
}

func findCert(st Status, host string) CertInfo {
	for _, c := range st.Certs {
		if c.Hostname == host {
			return c
		}
	}
	return CertInfo{}
}

// stuckCerts answers like an etcd member that lost quorum: a read waits
// until its context ends (ignoreCtx: even past it, as a stuck daemon would).
type stuckCerts struct {
	fakeCerts
	ignoreCtx bool
	release   chan struct{}
}

func (s stuckCerts) List(ctx context.Context) ([]*certstore.Record, []error, error) {
	if s.ignoreCtx {
		<-s.release
		return nil, nil, errors.New("released")
	}
	<-ctx.Done()
	return nil, nil, ctx.Err()
}

type stuckRows struct{ *fakeRows }

func (stuckRows) Cores(ctx context.Context) ([]dnsdata.CoreInfo, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

type ignoringRows struct {
	*fakeRows
	release chan struct{}
}

func (r ignoringRows) Cores(context.Context) ([]dnsdata.CoreInfo, error) {
	<-r.release
	return nil, errors.New("released")
}

// Status never hangs: every part is bounded by PartTimeout and one that does
// not answer is named unreachable, the others still answered. The stuck
// parts are released only when the test ends, so a status that waited for
// one would never answer: no wall-clock bound is needed to see it.
func TestStatusBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	for _, c := range []struct {
		name string
		a    *API
		want []string
	}{
		{"PlatformDB without quorum", &API{Certs: stuckCerts{}, DNS: stuckRows{&fakeRows{}}, Logger: quietLogger(),
			Self: func(context.Context) Self { return Self{ID: "core1", TLS: true, PlatformDB: MemberState{Up: false}} }},
			[]string{"the cluster's cores", "the certificates"}},
		{"a store read that ignores its context", &API{Certs: stuckCerts{ignoreCtx: true, release: release}, Logger: quietLogger(),
			Self: func(context.Context) Self { return Self{ID: "core1", TLS: true, PlatformDB: MemberState{Up: true}} }},
			[]string{"the certificates"}},
		{"this core's own state stuck", &API{Certs: fakeCerts{}, Logger: quietLogger(),
			Self: func(context.Context) Self { <-release; return Self{} }},
			[]string{"this core's own state"}},
		{"every part stuck, none watching its context", &API{Certs: stuckCerts{ignoreCtx: true, release: release}, DNS: ignoringRows{&fakeRows{}, release},
			Logger: quietLogger(), Self: func(context.Context) Self { <-release; return Self{} }},
			[]string{"this core's own state", "the cluster's cores", "the certificates"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			st := getStatus(t, c.a)
			t.Logf("status answered in %v: unreachable %q", time.Since(start).Round(time.Millisecond), st.Unreachable)
			if !slices.Equal(st.Unreachable, c.want) {
				t.Errorf("unreachable %q, want %q", st.Unreachable, c.want)
			}
			all := strings.Join(st.Problems, "\n")
			for _, part := range c.want {
				if !strings.Contains(all, part+" did not answer within 2s") {
					t.Errorf("problems lack %q:\n%s", part, all)
				}
			}
		})
	}
}

// rendezvous holds each part of a status until every one has started: parts
// read one after the other never all start, and the first is given up.
type rendezvous struct {
	mu      sync.Mutex
	want    int
	started map[string]bool
	all     chan struct{}
}

func newRendezvous(parts int) *rendezvous {
	return &rendezvous{want: parts, started: map[string]bool{}, all: make(chan struct{})}
}

func (r *rendezvous) arrive(ctx context.Context, part string) error {
	r.mu.Lock()
	if !r.started[part] {
		r.started[part] = true
		if len(r.started) == r.want {
			close(r.all)
		}
	}
	r.mu.Unlock()
	select {
	case <-r.all:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type meetingCerts struct {
	fakeCerts
	r *rendezvous
}

func (c meetingCerts) List(ctx context.Context) ([]*certstore.Record, []error, error) {
	return nil, nil, c.r.arrive(ctx, "certs")
}

type meetingRows struct {
	*fakeRows
	r *rendezvous
}

func (m meetingRows) Cores(ctx context.Context) ([]dnsdata.CoreInfo, error) {
	return m.cores, m.r.arrive(ctx, "cores")
}

// TestStatusPartsAtOnce: the parts of a status are read at once, so one
// PartTimeout bounds them all (the order of events shows it, not a clock):
// each part answers only once the three have started.
func TestStatusPartsAtOnce(t *testing.T) {
	r := newRendezvous(3)
	a := &API{Certs: meetingCerts{r: r}, DNS: meetingRows{&fakeRows{}, r}, Logger: quietLogger(),
		Self: func(ctx context.Context) Self {
			if err := r.arrive(ctx, "self"); err != nil {
				return Self{}
			}
			return Self{ID: "core1", TLS: true, PlatformDB: MemberState{Up: true}}
		}}
	st := getStatus(t, a)
	if len(st.Unreachable) != 0 || len(st.Problems) != 0 || st.Core.ID != "core1" {
		t.Fatalf("unreachable %q, problems %q, core %+v: the parts were not read at once", st.Unreachable, st.Problems, st.Core)
	}
}

type fakeParentDS struct {
	d       dnsdata.ParentDS
	release chan struct{} // non-nil: Check waits for it, ignoring its context
}

func (f fakeParentDS) Check(context.Context) dnsdata.ParentDS {
	if f.release != nil {
		<-f.release
	}
	return f.d
}

// TestStatusParentDS: the parent's DS is in the status; a mismatch or none
// is a warning (not a problem: the zone still answers), "cannot be checked"
// is said quietly, and a check that does not answer does not hold the
// status past its deadline.
func TestStatusParentDS(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	for _, c := range []struct {
		name    string
		p       fakeParentDS
		state   dnsdata.ParentDSState
		warning string
	}{
		{"matches", fakeParentDS{d: dnsdata.ParentDS{State: dnsdata.DSMatches, Detail: "the parent's DS for mc.example.com. matches key 1"}}, dnsdata.DSMatches, ""},
		{"mismatch", fakeParentDS{d: dnsdata.ParentDS{State: dnsdata.DSMismatch, Detail: "the parent's DS for mc.example.com. (key tag 9) matches none of the zone's keys (1)"}},
			dnsdata.DSMismatch, "DNSSEC: the parent's DS for mc.example.com. (key tag 9) matches none of the zone's keys (1); validating resolvers and the CA reject"},
		{"absent", fakeParentDS{d: dnsdata.ParentDS{State: dnsdata.DSAbsent, Detail: "the parent zone example.com. publishes no DS for mc.example.com."}},
			dnsdata.DSAbsent, "nothing validates it"},
		{"cannot be checked", fakeParentDS{d: dnsdata.ParentDS{State: dnsdata.DSUnchecked, Detail: "no system resolver"}}, dnsdata.DSUnchecked, ""},
		{"no answer", fakeParentDS{release: release}, dnsdata.DSUnchecked, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &API{Certs: fakeCerts{}, Logger: quietLogger(), ParentDS: c.p,
				Self: func(context.Context) Self { return Self{ID: "core1", TLS: true, PlatformDB: MemberState{Up: true}} }}
			// "no answer" holds its check until the test ends: a status
			// that waited for it would never answer.
			st := getStatus(t, a)
			if st.ParentDS == nil || st.ParentDS.State != c.state {
				t.Fatalf("parentDS %+v, want state %s", st.ParentDS, c.state)
			}
			warnings := strings.Join(st.Warnings, "\n")
			if c.warning == "" && strings.Contains(warnings, "DNSSEC") || c.warning != "" && !strings.Contains(warnings, c.warning) {
				t.Fatalf("warnings %q, want %q", st.Warnings, c.warning)
			}
			if len(st.Problems) != 0 {
				t.Fatalf("problems %q", st.Problems)
			}
		})
	}
}

package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/pryv/pryv-tls/internal/admin"
	"github.com/pryv/pryv-tls/internal/health"
)

const statusUsage = `usage: pryv-tls status --config FILE [--config FILE ...] [--json] [--no-color] [--wait 30s]

Is everything fine? This core and its role, every core of the cluster, every
certificate with its days left, the next renewal and the last error, through
the running core's control socket.
A core that is still starting (its control socket not there yet, or answering
"starting") is waited for, up to --wait (default 30s; 0: fail at once).

Certificates are judged against their own lifetime, not a fixed number of
days: one the renewer keeps needs attention once its renewal is overdue
(past the CA's renewal window, or a tenth of its lifetime past its planned
renewal); one nothing renews (imported, files) 7 days before expiry, or a
third of its lifetime before when that is shorter. A failed renewal that is
retried in time is a warning, not a problem.

Status never hangs: each part (this core, the cluster's cores, the
certificates) is read at once and bounded by 2s; one that does not answer
is named in "unreachable" and is a problem. A core that does not answer at
all within 5s is reported so.

Exit status: 0 all fine (warnings included); 1 something needs attention (an
overdue renewal, an expired certificate, an account paused by the CA, a core
down, a part unreachable, ...) or the core cannot be reached or does not
answer; 2 bad usage.
`

// statusAnswerTimeout bounds the wait for the core's answer. The core
// bounds each part of it by admin.PartTimeout (and reads them at once), so
// only a stuck daemon gets near this.
const statusAnswerTimeout = 2*admin.PartTimeout + time.Second

// ANSI colours, all of one length so that tabwriter aligns coloured and
// plain rows alike (the code opens the row's first cell).
const (
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiGreen  = "\x1b[32m"
	ansiPlain  = "\x1b[39m"
	ansiReset  = "\x1b[0m"
)

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var files stringList
	fs.Var(&files, "config", "configuration `FILE` (as given to serve); repeat it")
	coreFiles := coreConfigFlag(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	noColor := fs.Bool("no-color", false, "never colour the output (it is coloured only on a terminal anyway)")
	wait := waitFlag(fs)
	fs.Usage = func() { fmt.Fprint(stderr, statusUsage) }
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	cfg, code := loadConfigWithCore(*coreFiles, files, stderr)
	if cfg == nil {
		return code
	}
	c := newControlClient(cfg, *wait, stderr)
	c.http.Timeout = statusAnswerTimeout
	var st admin.Status
	if err := c.do("GET", "/status", nil, &st); err != nil {
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("the core did not answer within %s through its control socket %s: it accepts connections but nothing answers (the daemon is stuck or overloaded: see systemctl status pryv-tls and its log)",
				statusAnswerTimeout, cfg.Control.Socket)
		}
		fmt.Fprintf(stderr, "pryv-tls status: %v\n", err)
		return exitFailed
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			fmt.Fprintf(stderr, "pryv-tls status: %v\n", err)
			return exitFailed
		}
	} else {
		color := !*noColor && os.Getenv("NO_COLOR") == "" && isTerminal(stdout)
		printStatus(stdout, st, color)
	}
	if len(st.Problems) > 0 {
		return exitFailed
	}
	return exitOK
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func printStatus(w io.Writer, st admin.Status, color bool) {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + ansiReset
	}
	row := func(tw io.Writer, code string, cells ...string) {
		if color {
			fmt.Fprintf(tw, "%s%s\t%s\n", code, cells[0], strings.Join(cells[1:], "\t")+ansiReset)
			return
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}

	self := st.Core
	role := []string{"not the renewer", "not the CA holder"}
	if self.Renewer {
		role[0] = "renewer"
	}
	if self.CAHolder {
		role[1] = "CA holder"
	}
	db := paint(ansiRed, "PlatformDB DOWN")
	if self.PlatformDB.Up {
		db = "PlatformDB up"
		if self.PlatformDB.Leader {
			db += " (leader)"
		}
	}
	line := fmt.Sprintf("This core: %s (%s); %s", self.ID, strings.Join(role, ", "), db)
	if self.DNS.Active {
		if self.DNS.Serving {
			line += "; DNS serving"
		} else {
			line += "; " + paint(ansiRed, "DNS NOT SERVING")
		}
	}
	if self.TLS && self.Placeholder {
		line += "; " + paint(ansiRed, "serving the PLACEHOLDER certificate")
	}
	fmt.Fprintln(w, line)
	if r := self.LastReload; r != nil {
		if r.OK {
			fmt.Fprintf(w, "Configuration reloaded at %s\n", r.At.UTC().Format("2006-01-02 15:04:05 UTC"))
		} else {
			fmt.Fprintln(w, paint(ansiRed, fmt.Sprintf("Configuration reload REFUSED at %s (the configuration from before runs)", r.At.UTC().Format("2006-01-02 15:04:05 UTC"))))
		}
	}
	if d := st.ParentDS; d != nil {
		fmt.Fprintf(w, "DNSSEC parent DS: %s (%s)\n", d.State, d.Detail)
	}
	fmt.Fprintf(w, "As of %s\n", st.Time.UTC().Format("2006-01-02 15:04:05 UTC"))

	fmt.Fprintln(w, "\nCores")
	if len(st.Cores) == 0 {
		if slices.Contains(st.Unreachable, "the cluster's cores") {
			fmt.Fprintln(w, "  "+paint(ansiRed, "unknown: PlatformDB did not answer"))
		} else {
			fmt.Fprintln(w, "  none listed")
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		row(tw, ansiPlain, "  ID", "HEALTH", "USERS", "URL")
		for _, c := range st.Cores {
			health, code := "healthy", ansiPlain
			switch {
			case c.Member && !c.Healthy:
				health, code = "DOWN", ansiRed
			case !c.Member && !c.Available:
				health, code = "not joined yet", ansiYellow
			case !c.Member:
				health = "not a PlatformDB member"
			}
			url := c.URL
			if url == "" {
				url = "-"
			}
			row(tw, code, "  "+c.ID, health, fmt.Sprint(c.UserCount), url)
		}
		_ = tw.Flush()
	}

	fmt.Fprintln(w, "\nCertificates")
	if len(st.Certs) == 0 {
		if slices.Contains(st.Unreachable, "the certificates") {
			fmt.Fprintln(w, "  "+paint(ansiRed, "unknown: PlatformDB did not answer (this core keeps serving the ones it has)"))
		} else {
			fmt.Fprintln(w, "  none")
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		row(tw, ansiPlain, "  HOSTNAME", "DAYS LEFT", "EXPIRES", "STATE", "SOURCE", "NEXT RENEWAL", "LAST ERROR")
		for _, c := range st.Certs {
			days, expires, state := "-", "-", "not issued"
			if !c.ExpiresAt.IsZero() {
				days, expires, state = fmt.Sprint(c.DaysUntilExpiry), c.ExpiresAt.UTC().Format(time.DateOnly), c.State
			}
			if state == "" {
				state = "-"
			}
			code := certColour(c)
			if c.UnpauseURL != "" {
				state = "PAUSED"
			} else if c.NeedsAttention {
				state = strings.ToUpper(state)
			}
			next, lastErr, source := "-", "-", c.Source
			if c.NextRenewal != nil {
				next = c.NextRenewal.UTC().Format("2006-01-02 15:04")
			}
			if c.LastError != "" {
				lastErr = "failed"
				if c.LastErrorAt != nil {
					lastErr += " " + c.LastErrorAt.UTC().Format("2006-01-02 15:04")
				}
			}
			if source == "" {
				source = "-"
			}
			row(tw, code, "  "+c.Hostname, days, expires, state, source, next, lastErr)
		}
		_ = tw.Flush()
		for _, c := range st.Certs {
			if c.RenewedBy != "" && c.RenewedWhy != "" {
				fmt.Fprintf(w, "  %s: last renewed by %s, %s\n", c.Hostname, c.RenewedBy, c.RenewedWhy)
			}
		}
	}

	fmt.Fprintln(w)
	if n := st.NextRenewal; n != nil {
		fmt.Fprintf(w, "Next renewal: %s at %s (%s)\n", n.Hostname, n.At.UTC().Format("2006-01-02 15:04 UTC"), relative(n.At, st.Time))
	} else {
		fmt.Fprintln(w, "Next renewal: none planned on this cluster (no ACME certificate)")
	}
	if e := st.LastError; e != nil {
		fmt.Fprintf(w, "Last error:   %s at %s (%s): %s\n", e.Hostname, e.At.UTC().Format("2006-01-02 15:04 UTC"), relative(e.At, st.Time), paint(ansiRed, e.Error))
		printProblem(w, st, e.Hostname)
	} else {
		fmt.Fprintln(w, "Last error:   none")
	}

	if len(st.Warnings) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, paint(ansiYellow, fmt.Sprintf("Worth a look (%d):", len(st.Warnings))))
		for _, p := range st.Warnings {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	fmt.Fprintln(w)
	if len(st.Problems) == 0 {
		fmt.Fprintln(w, paint(ansiGreen, "All fine."))
		return
	}
	fmt.Fprintln(w, paint(ansiRed, fmt.Sprintf("Needs attention (%d):", len(st.Problems))))
	for _, p := range st.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

// relative says how far t is from now, in the largest whole unit.
func relative(t, now time.Time) string {
	d := t.Sub(now)
	suffix := "from now"
	if d < 0 {
		d, suffix = -d, "ago"
	}
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days %s", int(d.Hours()/24), suffix)
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours %s", int(d.Hours()), suffix)
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes %s", int(d.Minutes()), suffix)
	}
	return fmt.Sprintf("%d seconds %s", int(d.Seconds()), suffix)
}

// certColour is a certificate row's colour: red when it needs attention
// (or nothing is issued yet), yellow while it is being renewed or its last
// renewal failed, green otherwise.
func certColour(c admin.CertInfo) string {
	switch {
	case c.NeedsAttention, c.ExpiresAt.IsZero(), c.UnpauseURL != "":
		return ansiRed
	case c.LastError != "", c.State == health.StateDue:
		return ansiYellow
	}
	return ansiGreen
}

// printProblem shows the CA's problem document behind hostname's last
// error: its type and status, and each identifier's subproblem.
func printProblem(w io.Writer, st admin.Status, hostname string) {
	for _, c := range st.Certs {
		p := c.Problem
		if c.Hostname != hostname || p == nil {
			continue
		}
		line := "              CA problem: " + p.Type
		if p.Status != 0 {
			line += fmt.Sprintf(" (HTTP %d)", p.Status)
		}
		fmt.Fprintln(w, line)
		for _, sp := range p.Subproblems {
			fmt.Fprintf(w, "                %s: %s: %s\n", sp.Identifier, strings.TrimPrefix(sp.Type, "urn:ietf:params:acme:error:"), sp.Detail)
		}
		return
	}
}

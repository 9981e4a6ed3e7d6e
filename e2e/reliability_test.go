package e2e

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/e2e/faults"
)

// Row is one case of a fault scenario for docs/RELIABILITY.md (see package
// faults): Scenario (issue 18's number), Case, Done, Figures, Outcome
// (faults.Held, faults.Fixed, ...), Note.
type Row = faults.Row

var reliabilitySeq struct {
	sync.Mutex
	n map[string]int
}

// recordReliability records what a fault scenario measured. The row is
// written when the test ends, as FAILED if the test failed, to
// $PRYV_TLS_RELIABILITY_DIR (e2e/faults/run sets it; unset, the row is only
// logged). Every scenario of issue 18 records its figures through here so
// that e2e/faults/run renders them all into docs/RELIABILITY.md.
func recordReliability(t *testing.T, r Row) {
	t.Helper()
	if r.Outcome == "" {
		r.Outcome = faults.Held
	}
	r.Test = t.Name()
	r.Date = time.Now().UTC().Format("2006-01-02")
	reliabilitySeq.Lock()
	if reliabilitySeq.n == nil {
		reliabilitySeq.n = map[string]int{}
	}
	r.Seq = reliabilitySeq.n[r.Test]
	reliabilitySeq.n[r.Test]++
	reliabilitySeq.Unlock()
	t.Logf("reliability: scenario %d, %s: %s [%s]", r.Scenario, r.Case, r.Figures, r.Outcome)
	dir := os.Getenv(faults.EnvDir)
	if dir == "" {
		return
	}
	t.Cleanup(func() {
		if t.Failed() {
			r.Note = r.Outcome + " recorded before the test failed" + map[bool]string{true: "; " + r.Note}[r.Note != ""]
			r.Outcome = faults.Failed
		}
		if err := faults.Append(dir, r); err != nil {
			t.Errorf("recording the reliability row: %v", err)
		}
	})
}

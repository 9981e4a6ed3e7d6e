package dnsdata

import (
	"fmt"
	"testing"
	"time"

	"github.com/pryv/pryv-tls/internal/platformdb/platformdbtest"
	"github.com/pryv/pryv-tls/internal/testutil"
)

// TestSerialSameOnEveryCore: watchers on one PlatformDB (the cores of a
// cluster) answer the same SOA serial, whenever each started: after a write
// to a table the zone is not made of, and after a deletion (which leaves no
// row carrying its revision); and a watcher's serial only grows, across
// changes and across a restart.
func TestSerialSameOnEveryCore(t *testing.T) {
	db := platformdbtest.Open(t)
	ctx := testCtx(t)
	h1 := newHarness(t, db, staticConfig())
	h1.run()
	rows := h1.rows

	// seen is every serial h1 answered, in order.
	var seen []uint32
	h1serial := func() uint32 {
		s := h1.serial()
		seen = append(seen, s)
		return s
	}
	put := func(t *testing.T, sub, ip string) {
		t.Helper()
		if err := rows.SetRecords(ctx, Entry{Subdomain: sub, Records: Records{A: []string{ip}}}); err != nil {
			t.Fatal(err)
		}
		h1.waitA("udp", sub+"."+testDomain, ip)
	}
	same := func(t *testing.T, what string, hs ...*harness) uint32 {
		t.Helper()
		var s uint32
		testutil.Eventually(t, 5*time.Second, "one serial "+what, func() (bool, string) {
			s = h1serial()
			got := fmt.Sprintf("h1 %d", s)
			ok := true
			for i, h := range hs {
				o := h.serial()
				got += fmt.Sprintf(", core started later %d: %d", i+1, o)
				ok = ok && o == s
			}
			return ok, got
		})
		return s
	}

	put(t, "probe", "192.0.2.7")
	s0 := h1serial()

	t.Run("a core starting after a write to another table", func(t *testing.T) {
		if _, err := db.Put(ctx, "tls-cert/other.example.com", []byte(`{"not":"dns"}`)); err != nil {
			t.Fatal(err)
		}
		h2 := newHarness(t, db, staticConfig())
		h2.run()
		h2.waitA("udp", "probe."+testDomain, "192.0.2.7")
		same(t, "after a non-DNS write", h2)
		h2.stop()
	})

	t.Run("a core starting after a deletion", func(t *testing.T) {
		before := h1serial()
		put(t, "gone", "192.0.2.8")
		if err := rows.DeleteRecords(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		h1.waitA("udp", "gone."+testDomain, "NXDOMAIN")
		if s := h1serial(); s <= before {
			t.Errorf("serial %d after a put and a delete, was %d", s, before)
		}
		h3 := newHarness(t, db, staticConfig())
		h3.run()
		h3.waitA("udp", "probe."+testDomain, "192.0.2.7")
		h3.waitA("udp", "gone."+testDomain, "NXDOMAIN")
		s := same(t, "after a deletion", h3)

		// A restart (h3 again) answers no lower serial than it did.
		h3.stop()
		h4 := newHarness(t, db, staticConfig())
		h4.run()
		h4.waitA("udp", "probe."+testDomain, "192.0.2.7")
		if s4 := same(t, "after a restart", h4); s4 < s {
			t.Errorf("serial %d after a restart, was %d", s4, s)
		}
	})

	t.Run("one watcher's serial only grows", func(t *testing.T) {
		put(t, "later", "192.0.2.9")
		s := h1serial()
		if s <= s0 {
			t.Errorf("serial %d after changes, was %d at first", s, s0)
		}
		for i := 1; i < len(seen); i++ {
			if seen[i] < seen[i-1] {
				t.Errorf("serials answered in order %v: %d after %d", seen, seen[i], seen[i-1])
				break
			}
		}
	})
}

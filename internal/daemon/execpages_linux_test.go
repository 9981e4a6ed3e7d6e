package daemon

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"
)

func TestExecRanges(t *testing.T) {
	const exe = "/usr/local/bin/pryv tls"
	maps := []byte(`00400000-0107a000 r-xp 00000000 fe:00 10535565                           /usr/local/bin/pryv tls
0107a000-01ec1000 r--p 00c7a000 fe:00 10535565                           /usr/local/bin/pryv tls
01ec1000-01f66000 rw-p 01ac1000 fe:00 10535565                           /usr/local/bin/pryv tls
01f66000-03fb1000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r-xp 00000000 fe:00 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000002000-7f0000003000 r--p 00000000 fe:00 10535565                   /usr/local/bin/pryv tls (deleted)
7f0000004000-7f0000005000 r--p 00000000 fe:00 10535566                   /usr/local/bin/pryv tls2
zzzz-7f0000007000 r--p 00000000 fe:00 10535565                           /usr/local/bin/pryv tls
7f0000009000-7f0000008000 r--p 00000000 fe:00 10535565                   /usr/local/bin/pryv tls
`)
	want := [][2]uintptr{{0x400000, 0x107a000}, {0x107a000, 0x1ec1000}, {0x7f0000002000, 0x7f0000003000}}
	got := execRanges(maps, exe)
	if len(got) != len(want) {
		t.Fatalf("ranges %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("range %d: %x, want %x", i, got[i], want[i])
		}
	}
}

// execRSS is the resident size (kB) of the test binary's read-only
// mappings, from /proc/self/smaps, and whether all of them are marked for
// random reads (no read-ahead: VmFlags "rr").
func execRSS(t *testing.T) (kb int, random bool) {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	random = true
	for line := range bytes.Lines(smaps) {
		f := bytes.Fields(line)
		switch {
		case len(f) >= 5 && bytes.IndexByte(f[0], '-') > 0 && len(f[1]) == 4:
			in = len(f) >= 6 && string(bytes.Join(f[5:], []byte(" "))) == exe && f[1][1] == '-'
		case in && len(f) == 3 && string(f[0]) == "Rss:":
			n, _ := strconv.Atoi(string(f[1]))
			kb += n
		case in && len(f) > 0 && string(f[0]) == "VmFlags:":
			random = random && hasFlag(f[1:], "rr")
		}
	}
	return kb, random
}

func hasFlag(flags [][]byte, want string) bool {
	for _, f := range flags {
		if string(f) == want {
			return true
		}
	}
	return false
}

// The release works on this kernel: the test binary's code and read-only
// data are mostly not resident right after it, and the process goes on
// running (what it touches comes back).
func TestReleaseExecPages(t *testing.T) {
	before, _ := execRSS(t)
	n, err := releaseExecPages()
	if errors.Is(err, syscall.EINVAL) {
		t.Skipf("this kernel has no MADV_PAGEOUT (before Linux 5.4): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	after, random := execRSS(t)
	t.Logf("released %d bytes of mappings: resident %d kB -> %d kB", n, before, after)
	if n == 0 || before == 0 {
		t.Fatalf("released %d bytes, %d kB resident before: the executable's mappings were not found", n, before)
	}
	if after > before/2 {
		t.Fatalf("resident %d kB after the release, %d kB before: not released", after, before)
	}
	if !random {
		t.Fatal("the mappings are not marked for random reads (VmFlags rr): read-ahead brings their pages back")
	}
}

package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// Linux's madvise advice values (MADV_PAGEOUT is not in package syscall).
const (
	madvRandom  = 1  // MADV_RANDOM: a fault in the range reads its own page, no read-ahead
	madvPageout = 21 // MADV_PAGEOUT (Linux 5.4): reclaim the range's pages now
)

// releaseExecPages has the kernel reclaim the pages of the executable's own
// read-only mappings (code and read-only data) and read them back one page
// at a time, on their next touch, without read-ahead. Read-ahead at start
// leaves nearly all 26 MiB of them resident (measured on Linux 6.18, ext4),
// where an idle core touches 8-13 MiB (decision 0033).
// Pages another process maps too (a second pryv-tls) are left alone by the
// kernel. It reports how many bytes the mappings span.
func releaseExecPages() (uintptr, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("release the executable's pages: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("release the executable's pages: %w", err)
	}
	var total uintptr
	for _, r := range execRanges(maps, exe) {
		n := r[1] - r[0]
		for _, advice := range []uintptr{madvRandom, madvPageout} {
			if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, r[0], n, advice); e != 0 {
				return total, fmt.Errorf("release the executable's pages: madvise(%#x, %d, %d): %w", r[0], n, advice, e)
			}
		}
		total += n
	}
	return total, nil
}

// execRanges returns the [start, end) of the read-only mappings of the file
// exe in a /proc/PID/maps listing ("start-end perms offset dev inode path").
// Writable ones (the data segment) are the process's own copies: the kernel
// could only swap them out.
func execRanges(maps []byte, exe string) [][2]uintptr {
	var out [][2]uintptr
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 || len(f[1]) < 2 || f[1][1] != '-' {
			continue
		}
		// A path may hold spaces; one replaced on disk is "path (deleted)".
		path := string(bytes.Join(f[5:], []byte(" ")))
		if path != exe && path != exe+" (deleted)" {
			continue
		}
		a, b, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(a), 16, 64)
		end, err2 := strconv.ParseUint(string(b), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out
}

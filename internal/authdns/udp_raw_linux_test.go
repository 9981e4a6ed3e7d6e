package authdns

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSockaddrString(t *testing.T) {
	v4 := make([]byte, unix.SizeofSockaddrInet4)
	binary.NativeEndian.PutUint16(v4, unix.AF_INET)
	binary.BigEndian.PutUint16(v4[2:], 5353)
	copy(v4[4:], []byte{127, 0, 0, 1})
	v6 := make([]byte, unix.SizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(v6, unix.AF_INET6)
	binary.BigEndian.PutUint16(v6[2:], 53)
	v6[23] = 1
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"IPv4", v4, "127.0.0.1:5353"},
		{"IPv6", v6, "[::1]:53"},
		{"IPv6 cut short", v6[:20], "sockaddr(20 bytes)"},
		{"empty", nil, "sockaddr(0 bytes)"},
	} {
		if got := sockaddrString(tc.b); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

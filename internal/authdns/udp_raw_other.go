//go:build !linux

package authdns

import (
	"errors"
	"net"
	"sync"
)

// rawSocket: only Linux has the raw path; elsewhere the readers go through
// the netpoller. refs is counted all the same.
type rawSocket struct{ refs sync.WaitGroup }

func (r *rawSocket) open(*net.UDPConn) error { return errors.New("no raw UDP path on this platform") }

func (r *rawSocket) close() {}

func (r *rawSocket) done() <-chan struct{} { return nil }

func (u *udpServer) readRaw() {}

// Package sdnotify tells systemd (Type=notify) how start-up, reloads and
// shutdown go, through go-systemd's implementation of the protocol. Without
// NOTIFY_SOCKET (not run by systemd, or another Type=) every call does
// nothing.
package sdnotify

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends state changes to the service manager.
type Notifier struct {
	log    *slog.Logger
	failed atomic.Bool // a send failed once: later failures go to debug
}

// New returns a Notifier logging to log.
func New(log *slog.Logger) *Notifier { return &Notifier{log: log} }

// Status sets the one-line state systemctl status shows.
func (n *Notifier) Status(status string) { n.send(status) }

// Ready says start-up (or a reload) is done: the core serves.
func (n *Notifier) Ready(status string) { n.send(status, daemon.SdNotifyReady) }

// Reloading says a reload began; Ready ends it. systemd wants the
// monotonic time with it (for Type=notify-reload; harmless otherwise).
func (n *Notifier) Reloading(status string) {
	n.send(status, daemon.SdNotifyReloading, strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// Stopping says the shutdown began.
func (n *Notifier) Stopping(status string) { n.send(status, daemon.SdNotifyStopping) }

// Watchdog sends WATCHDOG=1 every half of WATCHDOG_USEC until ctx ends; it
// returns at once when the unit has no WatchdogSec=. A ping proves the
// process schedules goroutines and its timers fire; a core wedged past
// that is restarted by systemd.
func (n *Notifier) Watchdog(ctx context.Context) {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("WATCHDOG_USEC is not usable: no watchdog pings", "error", err.Error())
		return
	}
	if every <= 0 {
		return
	}
	every /= 2
	n.log.Debug("systemd watchdog: pinging", "every", every.String())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n.send("", daemon.SdNotifyWatchdog)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// send writes the assignments as one datagram, STATUS= last when given.
func (n *Notifier) send(status string, assignments ...string) {
	if status != "" {
		assignments = append(assignments, "STATUS="+oneLine(status))
	}
	_, err := daemon.SdNotify(false, strings.Join(assignments, "\n"))
	switch {
	case err == nil:
	case n.failed.Swap(true):
		n.log.Debug("notifying systemd", "error", err.Error())
	default:
		n.log.Warn("notifying systemd failed (NOTIFY_SOCKET set but not answering); the unit's state may lag", "error", err.Error())
	}
}

// oneLine keeps a status to one line: a newline would start a new
// assignment.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

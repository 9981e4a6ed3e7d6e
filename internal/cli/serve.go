package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/daemon"
)

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var files stringList
	fs.Var(&files, "config", "configuration `FILE`; repeat it, later files override earlier ones key by key")
	drain := fs.Duration("drain-timeout", 20*time.Second, "how long in-flight requests get to finish on SIGTERM")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return exitUsage
	}
	cfg, code := loadConfig(files, stderr)
	if cfg == nil {
		return code
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			log.Info("SIGHUP: re-reading certificate files")
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()

	daemon.Version = Version
	err = daemon.Run(ctx, cfg, daemon.Options{Logger: log, Reload: reload, DrainTimeout: *drain})
	if err != nil {
		log.Error("serve failed", "error", err.Error())
		return exitFailed
	}
	return exitOK
}

// loadConfig loads and validates; on failure it prints every problem at once
// and returns nil with the exit code.
func loadConfig(files []string, stderr io.Writer) (*config.Config, int) {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "missing --config FILE (repeat it to layer an override file over a default one)")
		return nil, exitUsage
	}
	cfg, err := config.Load(files...)
	if err != nil {
		fmt.Fprintf(stderr, "configuration is not valid:\n%s\n", indent(err.Error()))
		return nil, exitUsage
	}
	return cfg, exitOK
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

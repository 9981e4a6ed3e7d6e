package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pryv/pryv-tls/internal/atomicfile"
	"github.com/pryv/pryv-tls/internal/config"
	"github.com/pryv/pryv-tls/internal/daemon"
	"github.com/pryv/pryv-tls/internal/join"
)

func serve(args []string, stderr io.Writer) int {
	// From the first moment: a SIGTERM while the configuration loads or
	// PlatformDB opens is a stop (exit 0, "stopped during start-up"), and a
	// SIGHUP then waits for the core to be ready; neither takes the
	// signal's default action (death).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var files stringList
	fs.Var(&files, "config", "configuration `FILE`; repeat it, later files override earlier ones key by key")
	var coreFiles stringList
	fs.Var(&coreFiles, "core-config", "open-pryv.io's own configuration `FILE`, read first and only for the keys both share; repeat it (default, then override)")
	drain := fs.Duration("drain-timeout", 20*time.Second, "how long in-flight requests get to finish on SIGTERM")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	bundle := fs.String("bootstrap", "", "join a cluster with this `BUNDLE` (from \"pryv-tls bootstrap new-core\" on the CA holder)")
	passFile := fs.String("bootstrap-passphrase-file", "", "`FILE` holding the bundle's passphrase")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	log, level, err := newLevelLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return exitUsage
	}
	var pending *daemon.Join
	if *bundle != "" {
		var code int
		if files, pending, code = prepareJoin(files, *bundle, *passFile, stderr); pending == nil {
			return code
		}
		if code = keepOwn(coreFiles, files, stderr); code != exitOK {
			return code
		}
	}
	cfg, code := loadConfigWithCore(coreFiles, files, stderr)
	if cfg == nil {
		return code
	}
	if pending != nil {
		switch member, same := daemon.JoinedBefore(cfg, pending.Bundle); {
		case member && !same:
			fmt.Fprintf(stderr, "serve --bootstrap: this core already has a PlatformDB of its own in %s; a core joins a cluster with an empty one: move that directory aside (the cluster's data replaces it) and run the join again\n", cfg.PlatformDB.DataDir)
			return exitUsage
		case member:
			fmt.Fprintln(stderr, "serve --bootstrap: this core is already a member of this cluster; starting without joining again")
			pending = nil
		}
	}
	if pending != nil {
		if err := daemon.InstallBundle(cfg, pending.Bundle); err != nil {
			fmt.Fprintln(stderr, "serve --bootstrap:", err)
			return exitFailed
		}
	}

	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading the configuration and re-reading the certificate files")
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()

	daemon.Version = Version
	ready := func(string) {
		if pending != nil {
			// Joined and serving: the bundle's secrets are in place, the
			// token is spent; the file has no further use.
			if err := os.Remove(*bundle); err == nil {
				log.Info("joined the cluster; the bundle was deleted", "bundle", *bundle,
					"restart with", configFlags(files))
			}
		}
	}
	// A reload reads the same layers as the start: the core's files, then
	// ours (with the cluster override a join wrote), through the same
	// loader and validators.
	layers := &configLayers{files: files} // and the override of a live init-ca-holder
	load := func() (*config.Config, error) { return reloadConfig(coreFiles, layers.get()) }
	err = daemon.Run(ctx, cfg, daemon.Options{Logger: log, LogLevel: level, Reload: reload, Load: load,
		DrainTimeout: *drain, Join: pending, Ready: ready, AddLayer: layers.add})
	if err != nil {
		log.Error("serve failed", "error", err.Error())
		return exitFailed
	}
	return exitOK
}

// loadConfig loads and validates; on failure it prints every problem at once
// and returns nil with the exit code.
func loadConfig(files []string, stderr io.Writer) (*config.Config, int) {
	return loadConfigWithCore(nil, files, stderr)
}

// loadConfigWithCore is loadConfig with open-pryv.io's files (--core-config)
// read first.
func loadConfigWithCore(coreFiles, files []string, stderr io.Writer) (*config.Config, int) {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "missing --config FILE (repeat it to layer an override file over a default one)")
		return nil, exitUsage
	}
	cfg, err := config.LoadWithCore(coreFiles, files)
	if err != nil {
		fmt.Fprintf(stderr, "configuration is not valid:\n%s\n", indent(err.Error()))
		return nil, exitUsage
	}
	return cfg, exitOK
}

// reloadConfig loads the configuration for a reload; the error names the
// files it read when a problem found after layering names none.
func reloadConfig(coreFiles, files []string) (*config.Config, error) {
	cfg, err := config.LoadWithCore(coreFiles, files)
	if err != nil {
		all := append(slices.Clone(coreFiles), files...)
		return nil, fmt.Errorf("%s: %w", strings.Join(all, ", "), err)
	}
	return cfg, nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// prepareJoin opens the bundle and writes its override next to the last
// configuration file (0600: it holds the cluster's atRestKey and admin key).
// It returns the configuration files to load, with the override last.
func prepareJoin(files []string, bundlePath, passFile string, stderr io.Writer) ([]string, *daemon.Join, int) {
	if passFile == "" {
		fmt.Fprintln(stderr, "serve --bootstrap: --bootstrap-passphrase-file FILE is required (the passphrase printed by new-core)")
		return nil, nil, exitUsage
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "serve --bootstrap: give this core's own --config FILE too")
		return nil, nil, exitUsage
	}
	b, err := join.ReadBundle(bundlePath, passFile, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "serve --bootstrap:", err)
		return nil, nil, exitUsage
	}
	override := filepath.Join(filepath.Dir(files[len(files)-1]), clusterOverrideName)
	if err := atomicfile.Write(override, []byte(b.Override), 0o600); err != nil {
		fmt.Fprintln(stderr, "serve --bootstrap:", err)
		return nil, nil, exitFailed
	}
	if !slices.Contains(files, override) {
		files = append(files, override)
	}
	return files, &daemon.Join{Bundle: b}, exitOK
}

// coreConfigFlag adds --core-config to a command that loads the
// configuration, so that every command reads the same layers as serve (a
// topology kept only in the core's files would not validate without them).
func coreConfigFlag(fs *flag.FlagSet) *stringList {
	var coreFiles stringList
	fs.Var(&coreFiles, "core-config", "open-pryv.io's own configuration `FILE` (as given to serve), read first; repeat it")
	return &coreFiles
}

package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// newLogger builds the process logger: text for people, json for collectors.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	log, _, err := newLevelLogger(w, format, level)
	return log, err
}

// newLevelLogger is newLogger with its level adjustable while it runs
// (serve: log.level, applied again by a reload).
func newLevelLogger(w io.Writer, format, level string) (*slog.Logger, *slog.LevelVar, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	v := new(slog.LevelVar)
	v.Set(lv)
	o := &slog.HandlerOptions{Level: v}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), v, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), v, nil
	}
	return nil, nil, fmt.Errorf("--log-format: %q is not one of text, json", format)
}

package platformdb

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog is a zapcore.Core that forwards etcd's (server and client) zap
// records to a slog.Logger. Only warnings and errors pass: etcd logs a dozen
// info lines per start, per election and per snapshot, which an operator of
// pryv-tls does not need. Known noise is demoted to Debug (see demote).
//
// etcd's own request logs carry keys and sizes, never values (it logs
// "loggable" requests with value_size in place of the value); this bridge
// adds nothing of its own.
type zapToSlog struct {
	log     *slog.Logger
	attrs   []slog.Attr
	closing *atomic.Bool // set once Close starts: shutdown noise is demoted
}

func newZapLogger(log *slog.Logger, component string, closing *atomic.Bool) *zap.Logger {
	return zap.New(&zapToSlog{
		log:     log,
		attrs:   []slog.Attr{slog.String("component", component)},
		closing: closing,
	})
}

func (c *zapToSlog) Enabled(l zapcore.Level) bool { return l >= zapcore.WarnLevel }

func (c *zapToSlog) With(fields []zapcore.Field) zapcore.Core {
	return &zapToSlog{log: c.log, attrs: appendFields(slices.Clip(c.attrs), fields), closing: c.closing}
}

func (c *zapToSlog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapToSlog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slog.LevelWarn
	if e.Level >= zapcore.ErrorLevel {
		level = slog.LevelError
	}
	if c.demote(e, fields) {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !c.log.Enabled(ctx, level) {
		return nil
	}
	r := slog.NewRecord(e.Time, level, e.Message, 0)
	r.AddAttrs(c.attrs...)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(appendFields(nil, fields)...)
	return c.log.Handler().Handle(ctx, r)
}

func (c *zapToSlog) Sync() error { return nil }

// alwaysNoise are warnings etcd emits for choices this package makes on
// purpose. They are demoted to Debug.
var alwaysNoise = []string{
	// We serve gRPC on the client port (the HTTP gateway is off; etcd's
	// /health, /metrics and /version stay there, behind the same mutual
	// TLS), and give it no separate HTTP port.
	"Running http and grpc server on single port",
	// The client retries unary calls itself; the caller gets our mapped
	// error (ErrUnavailable) and decides whether to log it.
	"retrying of unary invoker failed",
	// A one-member deployment keeps the default name; the cluster issue
	// names members.
	"it isn't recommended to use default name",
	// etcd auth is off (access is by mutual TLS, Options.TLS): its
	// "simple" token type is never used.
	"simple token is not cryptographically signed",
}

// closeNoise are what a clean Close makes etcd log at warning or error
// level (its listeners and gRPC servers stopping under each other), matched
// on the message or on the error field. They are demoted to Debug once
// Close has started; before that they are real and stay visible.
var closeNoise = []string{
	"setting up serving from embedded etcd failed",
	"grpc server due to error", // "stopping/stopped (in)secure grpc server due to error"
	"use of closed network connection",
	"mux: server closed",
	"http: server closed",
	"grpc: the server has been stopped",
	"context canceled",
}

func (c *zapToSlog) demote(e zapcore.Entry, fields []zapcore.Field) bool {
	for _, s := range alwaysNoise {
		if strings.Contains(e.Message, s) {
			return true
		}
	}
	if !c.closing.Load() {
		return false
	}
	text := strings.ToLower(e.Message)
	for _, f := range fields {
		if f.Type == zapcore.ErrorType {
			if err, ok := f.Interface.(error); ok && err != nil {
				text += "\n" + strings.ToLower(err.Error())
			}
		}
	}
	for _, s := range closeNoise {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// appendFields converts zap fields to slog attributes, in order.
func appendFields(attrs []slog.Attr, fields []zapcore.Field) []slog.Attr {
	for _, f := range fields {
		if f.Type == zapcore.SkipType {
			continue
		}
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		if v, ok := enc.Fields[f.Key]; ok && len(enc.Fields) == 1 {
			attrs = append(attrs, slog.Any(f.Key, v))
			continue
		}
		keys := make([]string, 0, len(enc.Fields))
		for k := range enc.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			attrs = append(attrs, slog.Any(k, enc.Fields[k]))
		}
	}
	return attrs
}

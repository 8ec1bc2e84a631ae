// Package server holds what every Tributary binary runs besides its own
// component: logging setup, the self-metrics registry, the HTTP server with
// graceful shutdown, and signal handling, as blocks for an oklog/run group.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// RegisterFlags registers -log.level and -log.format.
func (c *LogConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Level, "log.level", "info", "Log level: debug, info, warn, error.")
	fs.StringVar(&c.Format, "log.format", "logfmt", "Log format: logfmt or json.")
}

// Logger builds the process logger.
func (c *LogConfig) Logger(component string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(c.Format) {
	case "logfmt", "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return nil, fmt.Errorf("log.format %q: want logfmt or json", c.Format)
	}
	return slog.New(h).With("component", component), nil
}

// Registry is a fresh registry with the Go and process collectors.
func Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// HTTP adds a block serving h on addr. On interrupt it stops accepting and
// waits up to grace for in-flight requests to finish.
func HTTP(g *run.Group, addr string, h http.Handler, grace time.Duration, log *slog.Logger) error {
	return HTTPTLS(g, addr, h, nil, grace, log)
}

// HTTPTLS is HTTP over TLS with tc (HTTP/2 offered), or plain text when tc
// is nil.
func HTTPTLS(g *run.Group, addr string, h http.Handler, tc *tls.Config, grace time.Duration, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, TLSConfig: tc}
	g.Add(func() error {
		log.Info("serving HTTP", "addr", ln.Addr().String(), "tls", tc != nil)
		serve := srv.Serve
		if tc != nil {
			serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") } // the certificate comes from tc
		}
		if err := serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("HTTP shutdown incomplete", "err", err)
		}
	})
	return nil
}

// Signals adds a block that ends the group on SIGINT or SIGTERM.
func Signals(g *run.Group, log *slog.Logger) {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	g.Add(func() error {
		<-ctx.Done()
		log.Info("signal received, shutting down")
		return nil
	}, func(error) { cancel() })
}

// Pprof mounts net/http/pprof under /debug/pprof/ on mux.
func Pprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

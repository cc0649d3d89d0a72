// Package server serves the controller's operational endpoints: /healthz,
// /readyz, /metrics and /status. It listens on loopback by default, since
// the process holds the Docker socket, and shuts down gracefully.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultAddr is where the endpoints listen unless told otherwise.
const DefaultAddr = "127.0.0.1:9477"

// shutdownTimeout bounds how long in-flight requests may finish on stop.
const shutdownTimeout = 5 * time.Second

// Config says what the endpoints answer.
type Config struct {
	// Addr is host:port; ":0" picks a free port (see Server.Addr).
	Addr string
	// Metrics serves /metrics.
	Metrics http.Handler
	// Status returns the value /status encodes as JSON.
	Status func() any
	// Ready tells /readyz whether the controller is ready, and why in a
	// line per check.
	Ready func() (ok bool, detail string)
	// Log receives serving errors; slog.Default() when nil.
	Log *slog.Logger
}

// Server serves the endpoints on one listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// Listen binds the address at once, so a port in use fails the command
// before the controller starts, and returns the server; Serve runs it.
func Listen(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	s := &Server{ln: ln, log: log}
	s.srv = &http.Server{
		Handler: Handler(cfg),
		// Slow or idle clients must not hold connections: this server
		// only answers probes and scrapes.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until ctx is done, then lets in-flight requests
// finish for a few seconds. It returns nil after a clean stop.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		// Connections still open after the timeout: cut them.
		_ = s.srv.Close()
		return fmt.Errorf("shut down %s: %w", s.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", s.Addr(), err)
	}
	return nil
}

// Handler routes the endpoints; exported for tests and embedding.
func Handler(cfg Config) http.Handler {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		// Answering at all is the proof of life: the process serves.
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready == nil {
			writeText(w, http.StatusOK, "ok\n")
			return
		}
		ok, detail := cfg.Ready()
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		writeText(w, code, detail)
	})
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		var v any = struct{}{}
		if cfg.Status != nil {
			v = cfg.Status()
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			log.Error("encode status", "error", err)
			http.Error(w, "cannot encode the status", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(append(b, '\n'))
	})
	return mux
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

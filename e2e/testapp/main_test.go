package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// A failed write shows as a wrong answer in the probe's result.
		_, _ = w.Write([]byte("answering-host\n"))
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("test server: %v", err)
		}
	})

	// A port on loopback that nothing listens on: bind, then close.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	// Names are looked up through a DNS server on that closed port, so a
	// failed lookup sends nothing off this machine.
	resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", closedAddr)
	}}
	t.Cleanup(func() { resolver = net.DefaultResolver })

	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"reachable", []string{"probe", ln.Addr().String()}, 0, "ok   " + ln.Addr().String() + " hostname=answering-host"},
		{"flags first", []string{"probe", "--timeout", "1s", ln.Addr().String()}, 0, "hostname=answering-host"},
		{"refused", []string{"probe", closedAddr, "--timeout", "1s"}, 1, "fail " + closedAddr},
		{"unresolvable", []string{"probe", "unresolvable.test:80", "--timeout", "1s"}, 1, "fail unresolvable.test resolve"},
		{"no port", []string{"probe", "127.0.0.1"}, 2, ""},
		{"no address", []string{"probe"}, 2, ""},
		{"unknown command", []string{"frobnicate"}, 2, ""},
		{"each", []string{"probe-each", "--timeout", "1s", ln.Addr().String(), closedAddr}, 0,
			"=== " + ln.Addr().String() + " exit 0\nok   " + ln.Addr().String() + " hostname=answering-host\n=== " + closedAddr + " exit 1\nfail " + closedAddr},
		{"each, no port", []string{"probe-each", "127.0.0.1"}, 0, "=== 127.0.0.1 exit 2\n"},
		{"each, no address", []string{"probe-each"}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.out) {
				t.Fatalf("stdout %q does not contain %q", stdout.String(), tc.out)
			}
		})
	}
}

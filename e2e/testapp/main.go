// Command testapp is the image of every service swarmsec's integration and
// end-to-end tests deploy. It is built static (CGO_ENABLED=0) into an image
// FROM scratch, so it uses the standard library only.
//
//	testapp serve [--listen :8080]
//	testapp probe ADDR [--timeout 2s] [--all]
//	testapp probe-each [--timeout 2s] [--all] ADDR...
//
// serve answers HTTP on TCP: GET / returns the hostname (the task's container
// ID prefix in a Swarm), so a prober sees which task answered.
//
// probe resolves the host part of ADDR (host:port) to all its IPv4 and IPv6
// addresses (tasks.<service> gives one per task), tries a TCP connection to
// each in parallel and prints one line per address:
//
//	ok   10.0.1.3:8080 hostname=4f95555a407d
//	fail 10.0.1.4:8080 dial tcp 10.0.1.4:8080: i/o timeout
//
// It exits 0 when at least one address connected (with --all: every one), 1
// when none did (or the name did not resolve), 2 on a usage error.
//
// probe-each runs probe for each ADDR at once, all in one process (a whole
// row of a reachability matrix for the price of one exec), and prints, for
// each ADDR in order, a line "=== ADDR exit N" (N: what probe would have
// exited with) followed by probe's output. It exits 0, or 2 on a usage
// error.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: testapp serve [--listen :8080] | testapp probe ADDR [--timeout 2s] [--all]")
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "probe":
		return probe(args[1:], stdout, stderr)
	case "probe-each":
		return probeEach(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "testapp: unknown command %q\n", args[0])
	return 2
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", ":8080", "TCP address to serve HTTP on; several, comma-separated, serve on each")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	hostname, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, hostname)
	})
	addrs := strings.Split(*listen, ",")
	// As PID 1 of a container, stop at once on SIGTERM so that removing a
	// service does not wait for its stop grace period.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errs := make(chan error, len(addrs))
	for _, addr := range addrs {
		srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			<-ctx.Done()
			srv.Close()
		}()
		go func() { errs <- srv.ListenAndServe() }()
	}
	fmt.Fprintf(stderr, "testapp: %s serving on %s\n", hostname, *listen)
	for range addrs {
		if err := <-errs; err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, "testapp:", err)
			return 1
		}
	}
	return 0
}

// result is what probing one address gave.
type result struct {
	addr     string
	err      error
	hostname string
}

func probe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "time allowed to resolve, connect and read the answer")
	all := fs.Bool("all", false, "succeed only when every address connects")
	// Accept the address before or after the flags.
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if target == "" && fs.NArg() == 1 {
		target = fs.Arg(0)
	} else if fs.NArg() != 0 || target == "" {
		fmt.Fprintln(stderr, "usage: testapp probe ADDR [--timeout 2s] [--all]")
		return 2
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		fmt.Fprintf(stderr, "testapp: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	addrs, err := resolve(ctx, host)
	if err != nil {
		fmt.Fprintf(stdout, "fail %s resolve: %v\n", host, err)
		return 1
	}
	results := make([]result, len(addrs))
	var wg sync.WaitGroup
	for i, ip := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = connect(ctx, net.JoinHostPort(ip, port))
		}()
	}
	wg.Wait()

	connected := 0
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(stdout, "fail %s %v\n", r.addr, r.err)
			continue
		}
		connected++
		fmt.Fprintf(stdout, "ok   %s hostname=%s\n", r.addr, r.hostname)
	}
	if connected == 0 || (*all && connected != len(results)) {
		return 1
	}
	return 0
}

func probeEach(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe-each", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "time allowed to each probe")
	all := fs.Bool("all", false, "a probe succeeds only when every address of its ADDR connects")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: testapp probe-each [--timeout 2s] [--all] ADDR...")
		return 2
	}
	type outcome struct {
		code int
		out  strings.Builder
	}
	outcomes := make([]outcome, fs.NArg())
	var wg sync.WaitGroup
	for i, target := range fs.Args() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pargs := []string{target, "--timeout", timeout.String()}
			if *all {
				pargs = append(pargs, "--all")
			}
			o := &outcomes[i]
			o.code = probe(pargs, &o.out, &o.out)
		}()
	}
	wg.Wait()
	for i, target := range fs.Args() {
		fmt.Fprintf(stdout, "=== %s exit %d\n%s", target, outcomes[i].code, outcomes[i].out.String())
	}
	return 0
}

// resolver is replaced by the unit test so that it sends no DNS query.
var resolver = net.DefaultResolver

// resolve returns host's addresses, sorted; an IP literal is returned as is.
func resolve(ctx context.Context, host string) ([]string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []string{ip.String()}, nil
	}
	ips, err := resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, errors.New("no addresses")
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.IP.String())
	}
	sort.Strings(out)
	return out, nil
}

// connect dials addr and, once connected, asks for GET / to learn which
// task answered. The connection alone counts as success: a TCP service that
// is not testapp still probes ok.
func connect(ctx context.Context, addr string) result {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return result{addr: addr, err: err}
	}
	defer conn.Close()
	r := result{addr: addr, hostname: "?"}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return r
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return r
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err == nil && resp.StatusCode == http.StatusOK {
		if h := strings.TrimSpace(string(body)); h != "" {
			r.hostname = h
		}
	}
	return r
}

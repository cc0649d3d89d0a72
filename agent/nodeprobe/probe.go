package nodeprobe

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"

	"github.com/swarmsec/swarmsec/agent/firewall"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// Docker is what the checks ask of the node's own engine.
type Docker interface {
	Info(ctx context.Context) (system.Info, error)
	NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
}

// Prober runs the checks on the node it runs on, in the node's network
// namespace.
type Prober struct {
	Hostname string
	// Docker is the node's engine; nil leaves its checks unknown.
	Docker Docker
	// IPTables is the IPv4 table holding DOCKER-USER; nil when none does
	// (IPTablesErr says why). Tables, when set, gives them anew for each
	// report.
	IPTables    firewall.Table
	IPTablesErr error
	Tables      func() (firewall.Table, error)
	// u32 caches the u32 probe: it rewrites the filter table, which a
	// legacy backend does whole, so it runs every probeEvery only.
	u32At  time.Time
	u32Res agentv1.Check
	// Exec runs a command (the node's ip, for the ESP probe).
	Exec func(ctx context.Context, name string, args ...string) ([]byte, error)
	// ProcNet is /proc/net (of the node's network namespace).
	ProcNet string
}

// probeChain is the agent's throwaway chain for the u32 probe.
const probeChain = firewall.Chain + "-PROBE"

// Report runs every check.
func (p *Prober) Report(ctx context.Context) agentv1.Report {
	r := agentv1.Report{Node: p.Hostname, Time: time.Now().UTC()}
	if p.Tables != nil {
		p.IPTables, p.IPTablesErr = p.Tables()
	}
	var info *system.Info
	if p.Docker != nil {
		if i, err := p.Docker.Info(ctx); err == nil {
			info = &i
			r.NodeID = i.Swarm.NodeID
		}
	}
	r.Checks = append(r.Checks, p.esp(ctx), p.u32(), p.dataPath(info), p.iptables())
	r.Checks = append(r.Checks, p.icc(ctx))
	r.Checks = append(r.Checks, p.published(ctx)...)
	return r
}

// esp adds an ESP state with the algorithm Docker uses to the node's
// XFRM database, for documentation addresses, and removes it at once: the
// kernel says whether it has ESP and AES-GCM. A state without a policy
// carries no traffic.
func (p *Prober) esp(ctx context.Context) agentv1.Check {
	c := agentv1.Check{ID: agentv1.CheckESP}
	if p.Exec == nil {
		c.Result, c.Message = agentv1.Unknown, "no ip command to ask the kernel"
		return c
	}
	spi := "0x53534543"
	sel := []string{"src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "spi", spi}
	add := append(append([]string{"xfrm", "state", "add"}, sel...), "reqid", "1397969219", "mode", "transport",
		"aead", "rfc4106(gcm(aes))", "0x"+strings.Repeat("53", 20), "128")
	out, err := p.Exec(ctx, "ip", add...)
	if err == nil {
		_, _ = p.Exec(ctx, "ip", append([]string{"xfrm", "state", "del"}, sel...)...)
		c.Result, c.Message = agentv1.OK, "the kernel has IPsec ESP with AES-GCM: encrypted overlay traffic can cross this node"
		return c
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(msg, "File exists") {
		c.Result, c.Message = agentv1.OK, "the kernel has IPsec ESP (a probe state was left in place)"
		return c
	}
	if msg == "" {
		msg = err.Error()
	}
	c.Result = agentv1.Failed
	c.Message = "the kernel cannot add an IPsec ESP state with AES-GCM (" + msg + "): tasks on encrypted overlay networks cannot talk across this node"
	c.Fix = "load the esp4, esp6 and gcm modules (modprobe esp4 esp6 gcm aes) or run a kernel built with CONFIG_INET_ESP, CONFIG_INET6_ESP and CONFIG_CRYPTO_GCM"
	return c
}

// u32 appends a u32 rule to a chain of the agent's own and removes the
// chain: the kernel refuses the rule without xt_u32.
func (p *Prober) u32() agentv1.Check {
	c := agentv1.Check{ID: agentv1.CheckU32}
	if p.IPTables == nil {
		c.Result, c.Message = agentv1.Unknown, "no iptables to ask"
		return c
	}
	if !p.u32At.IsZero() && time.Since(p.u32At) < probeEvery {
		return p.u32Res
	}
	p.u32At = time.Now()
	c = p.probeU32()
	p.u32Res = c
	return c
}

// probeEvery is how often the probes that write to the filter table run.
const probeEvery = 15 * time.Minute

func (p *Prober) probeU32() agentv1.Check {
	c := agentv1.Check{ID: agentv1.CheckU32}
	defer func() { _ = p.IPTables.ClearAndDeleteChain("filter", probeChain) }()
	if err := p.IPTables.ClearChain("filter", probeChain); err != nil {
		c.Result, c.Message = agentv1.Unknown, "cannot make a probe chain: "+err.Error()
		return c
	}
	if err := p.IPTables.Append("filter", probeChain, "-m", "u32", "--u32", "0x0=0x0", "-j", "RETURN"); err != nil {
		c.Result = agentv1.Failed
		c.Message = "the kernel has no u32 match (" + firstLine(err.Error()) + "): Docker cannot drop unencrypted VXLAN for encrypted networks, and refuses to attach them"
		c.Fix = "load the xt_u32 module (modprobe xt_u32) or run a kernel built with CONFIG_NETFILTER_XT_MATCH_U32"
		return c
	}
	c.Result, c.Message = agentv1.OK, "the kernel has the u32 match Docker needs for encrypted networks"
	return c
}

// dataPath looks for a filter INPUT policy of DROP with no rule that lets
// the data path in.
func (p *Prober) dataPath(info *system.Info) agentv1.Check {
	c := agentv1.Check{ID: agentv1.CheckDataPath}
	port := uint32(4789)
	if info != nil && info.Swarm.Cluster != nil && info.Swarm.Cluster.DataPathPort != 0 {
		port = info.Swarm.Cluster.DataPathPort
	}
	if p.IPTables == nil {
		c.Result, c.Message = agentv1.Unknown, "no iptables to ask"
		return c
	}
	rules, err := p.IPTables.List("filter", "INPUT")
	if err != nil {
		c.Result, c.Message = agentv1.Unknown, "cannot list INPUT: "+err.Error()
		return c
	}
	drops := slices.Contains(rules, "-P INPUT DROP")
	vxlan := slices.ContainsFunc(rules, func(r string) bool {
		return strings.Contains(r, "--dport "+strconv.Itoa(int(port))) && strings.Contains(r, "ACCEPT")
	})
	esp := slices.ContainsFunc(rules, func(r string) bool {
		return (strings.Contains(r, "-p esp") || strings.Contains(r, "-p 50")) && strings.Contains(r, "ACCEPT")
	})
	if drops && (!vxlan || !esp) {
		c.Result = agentv1.Warning
		c.Message = fmt.Sprintf("INPUT drops by default and no rule accepts %s: overlay traffic from other nodes may be dropped",
			strings.Join(missing(map[string]bool{fmt.Sprintf("udp/%d (VXLAN)", port): vxlan, "IP protocol 50 (ESP)": esp}), " or "))
		c.Fix = fmt.Sprintf("accept udp/%d and IP protocol 50 from the other nodes (and tcp/2377, tcp+udp/7946 on managers)", port)
		return c
	}
	c.Result, c.Message = agentv1.OK, fmt.Sprintf("INPUT does not drop the data path (udp/%d, ESP)", port)
	return c
}

func missing(m map[string]bool) []string {
	var out []string
	for k, ok := range m {
		if !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (p *Prober) iptables() agentv1.Check {
	c := agentv1.Check{ID: agentv1.CheckIPTables}
	if p.IPTables == nil {
		c.Result = agentv1.Failed
		c.Message = "Docker manages no iptables rules here that the agent can join (" + errText(p.IPTablesErr) + "): published ports are not filtered on this node"
		c.Fix = `run dockerd with iptables enabled (the default; remove "iptables": false from daemon.json)`
		return c
	}
	c.Result, c.Message = agentv1.OK, "Docker's DOCKER-USER chain is there: the agent filters published ports"
	return c
}

func (p *Prober) icc(ctx context.Context) agentv1.Check {
	c := agentv1.Check{ID: agentv1.CheckICC}
	if p.Docker == nil {
		c.Result, c.Message = agentv1.Unknown, "no Docker socket to ask"
		return c
	}
	n, err := p.Docker.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		c.Result, c.Message = agentv1.Unknown, "the default bridge: "+err.Error()
		return c
	}
	if n.Options["com.docker.network.bridge.enable_icc"] == "false" {
		c.Result, c.Message = agentv1.OK, "containers on the default bridge cannot talk to each other (icc off)"
		return c
	}
	c.Result = agentv1.Warning
	c.Message = "containers on the default bridge can talk to each other, outside any policy (icc on)"
	c.Fix = `set "icc": false in /etc/docker/daemon.json and restart dockerd`
	return c
}

// published checks the containers of this node: those outside Swarm that
// publish on every address, and whether a userland proxy holds a port.
func (p *Prober) published(ctx context.Context) []agentv1.Check {
	all := agentv1.Check{ID: agentv1.CheckPublishAll}
	proxy := agentv1.Check{ID: agentv1.CheckUserlandProxy}
	if p.Docker == nil {
		all.Result, all.Message = agentv1.Unknown, "no Docker socket to ask"
		proxy.Result, proxy.Message = agentv1.Unknown, all.Message
		return []agentv1.Check{all, proxy}
	}
	cs, err := p.Docker.ContainerList(ctx, container.ListOptions{})
	if err != nil {
		all.Result, all.Message = agentv1.Unknown, "containers: "+err.Error()
		proxy.Result, proxy.Message = agentv1.Unknown, all.Message
		return []agentv1.Check{all, proxy}
	}
	listening := p.listening()
	var wide, proxied []string
	ports := 0
	for _, c := range cs {
		name := strings.TrimPrefix(firstOf(c.Names), "/")
		_, task := c.Labels["com.docker.swarm.task.id"]
		for _, pt := range c.Ports {
			if pt.PublicPort == 0 {
				continue
			}
			ports++
			if !task && (pt.IP == "" || pt.IP == "0.0.0.0" || pt.IP == "::") {
				wide = append(wide, fmt.Sprintf("%s (%s:%d)", name, cmpIP(pt.IP), pt.PublicPort))
			}
			if listening[pt.PublicPort] {
				proxied = append(proxied, fmt.Sprintf("%s (%d)", name, pt.PublicPort))
			}
		}
	}
	slices.Sort(wide)
	wide = slices.Compact(wide)
	slices.Sort(proxied)
	proxied = slices.Compact(proxied)
	if len(wide) > 0 {
		all.Result = agentv1.Warning
		all.Message = "containers outside Swarm publish on every address, past any policy: " + strings.Join(wide, ", ")
		all.Fix = `publish on loopback or one address (-p 127.0.0.1:8080:80), or set "ip": "127.0.0.1" in daemon.json`
	} else {
		all.Result, all.Message = agentv1.OK, "no container outside Swarm publishes on every address"
	}
	switch {
	case listening == nil:
		proxy.Result, proxy.Message = agentv1.Unknown, "cannot read "+filepath.Join(p.ProcNet, "tcp")
	case len(proxied) > 0:
		proxy.Result = agentv1.Warning
		proxy.Message = "a userland proxy holds published ports (its connections reach containers past DOCKER-USER): " + strings.Join(proxied, ", ")
		proxy.Fix = `set "userland-proxy": false in /etc/docker/daemon.json and restart dockerd`
	case ports == 0:
		proxy.Result, proxy.Message = agentv1.Unknown, "no published port to tell by"
	default:
		proxy.Result, proxy.Message = agentv1.OK, "no userland proxy holds a published port"
	}
	return []agentv1.Check{all, proxy}
}

func cmpIP(ip string) string {
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}

func firstOf(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return xs[0]
}

// listening reads the TCP ports something listens on in the node's
// network namespace; nil when it cannot.
func (p *Prober) listening() map[uint16]bool {
	if p.ProcNet == "" {
		return nil
	}
	out := map[uint16]bool{}
	read := false
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(filepath.Join(p.ProcNet, f))
		if err != nil {
			continue
		}
		read = true
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 4 || fs[3] != "0A" { // LISTEN
				continue
			}
			_, port, ok := strings.Cut(fs[1], ":")
			if n, err := strconv.ParseUint(port, 16, 16); ok && err == nil {
				out[uint16(n)] = true
			}
		}
		fh.Close()
	}
	if !read {
		return nil
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func errText(err error) string {
	if err == nil {
		return "no DOCKER-USER chain"
	}
	return err.Error()
}

package dns

import (
	"context"
	"fmt"
	"slices"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the agent's DNS table in each task's namespace (family
// inet). It is apart from the per-task rules' table, which each swap
// deletes and re-creates.
const TableName = "swarmsec-dns"

// Resolver is Swarm's embedded DNS resolver, in every task's namespace.
var Resolver = [4]byte{127, 0, 0, 11}

// LogRate bounds the answers a namespace logs, per second (burst twice
// that): a task that floods the resolver costs the node little, and its
// lookups beyond are not seen.
const LogRate = 100

// SnapLen is how much of each answer the kernel copies to the agent: a
// UDP answer of the embedded resolver fits (512 bytes, or an EDNS size).
const SnapLen = 4096

// Install puts the DNS table in the namespace of fd, replacing the one
// there in one transaction: its input chain counts and logs to NFLOG
// group every packet from the resolver's port 53, UDP or TCP. Docker DNATs the
// queries to 127.0.0.11:53 to the port its resolver listens on (nat
// OUTPUT, priority -100) and puts port 53 back on the answers (nat
// POSTROUTING): at the input hook an answer comes from 127.0.0.11:53.
func Install(fd int, group uint16) error {
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer func() { _ = c.CloseLasting() }() // a read-only close: nothing to report
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	c.AddTable(t) // so the delete finds one
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "in", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: Resolver[:]},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 53}},
			&expr.Counter{}, // every answer, before the limit: Counted
			&expr.Limit{Type: expr.LimitTypePkts, Rate: LogRate, Unit: expr.LimitTimeSecond, Burst: 2 * LogRate},
			&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: []byte("swarmsec dns")},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", TableName, err)
	}
	return nil
}

// Installed reports whether the namespace of fd holds the DNS table with
// its rules (a table someone flushed or removed, or one of an agent
// before the counters, is put back).
func Installed(fd int) (bool, error) {
	rules, err := rulesOf(fd)
	if err != nil {
		return false, nil //nolint:nilerr // no such table or chain: not installed
	}
	if len(rules) != 2 {
		return false, nil
	}
	for _, r := range rules {
		if !slices.ContainsFunc(r.Exprs, func(e expr.Any) bool { _, ok := e.(*expr.Counter); return ok }) {
			return false, nil
		}
	}
	return true, nil
}

// Counted is how many answers the DNS table of the namespace of fd saw
// since it was installed, logged or not: the kernel's limit (and a full
// NFLOG queue) drop the rest without a word.
func Counted(fd int) (uint64, error) {
	rules, err := rulesOf(fd)
	if err != nil {
		return 0, fmt.Errorf("nftables table %s: %w", TableName, err)
	}
	var n uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n += c.Packets
			}
		}
	}
	return n, nil
}

func rulesOf(fd int) ([]*nftables.Rule, error) {
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer func() { _ = c.CloseLasting() }() // a read-only close: nothing to report
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	return c.GetRules(t, &nftables.Chain{Name: "in", Table: t})
}

// Remove deletes the DNS table from the namespace, if there.
func Remove(fd int) error {
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer func() { _ = c.CloseLasting() }() // a read-only close: nothing to report
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", TableName, err)
	}
	return nil
}

// Listen reads the answers logged to group in the namespace of fd and
// gives each packet to fn until ctx ends. It returns once listening (or
// with the error that kept it from listening).
func Listen(ctx context.Context, fd int, group uint16, fn func(packet []byte)) error {
	nf, err := nflog.Open(&nflog.Config{Group: group, Copymode: nflog.CopyPacket, Bufsize: SnapLen, NetNS: fd, Timeout: 20, QThresh: 64})
	if err != nil {
		return fmt.Errorf("nflog group %d: %w", group, err)
	}
	hook := func(a nflog.Attribute) int {
		if a.Payload != nil {
			fn(*a.Payload)
		}
		return 0
	}
	errf := func(error) int {
		if ctx.Err() != nil {
			return 1
		}
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, errf); err != nil {
		nf.Close()
		return fmt.Errorf("nflog group %d: %w", group, err)
	}
	go func() {
		<-ctx.Done()
		nf.Close()
	}()
	return nil
}

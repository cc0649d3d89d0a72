package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"go4.org/netipx"
	"golang.org/x/sys/unix"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// TableName is the agent's table in each task's namespace (family inet,
// IPv4 and IPv6). The agent touches no other.
const TableName = "swarmsec"

// Log prefixes, by verdict and direction: Flows tells them apart. Drops
// (blocked), the audit chains' would-be drops (would-block) and the
// accepts of rules with log: all (allowed, logged where the connection is
// opened).
const (
	PrefixOut      = "swarmsec out"
	PrefixIn       = "swarmsec in"
	PrefixAuditOut = "swarmsec audit out"
	PrefixAuditIn  = "swarmsec audit in"
	PrefixAllowOut = "swarmsec allow out"
)

// The chains of the table: out and in judge; audit-out and audit-in, at a
// later priority of the same hooks, see only what those accepted (a drop
// is final, an accept in one base chain is not) and only log.
var chainNames = []string{"out", "in", "audit-out", "audit-in"}

// LogRate bounds what each logging rule logs, per second (burst twice
// that; each rule has its own bucket): a flood of attempts costs the node
// little.
const LogRate = 10

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// Apply installs rs in the namespace of fd as the table "inet swarmsec",
// replacing the one there in one transaction (the kernel commits a batch
// whole or not at all): packets meet the old table or the new, never none
// and never a mix. Drops are logged to NFLOG group.
func Apply(fd int, rs *Ruleset, group uint16) error {
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer func() { _ = c.CloseLasting() }() // a read-only close: nothing to report
	t := table()
	c.AddTable(t) // so the delete finds one
	c.DelTable(t)
	c.AddTable(t)
	b := &builder{c: c, t: t, group: group}
	accept := nftables.ChainPolicyAccept
	later := nftables.ChainPriorityRef(*nftables.ChainPriorityFilter + 10)
	for _, ch := range []struct {
		name     string
		hook     *nftables.ChainHook
		priority *nftables.ChainPriority
		rules    []Rule
		prefix   string // of a drop, or in an audit chain of a would-be drop
		allow    string // of an accept that logs
		src      bool
		audit    bool
	}{
		{"out", nftables.ChainHookOutput, nftables.ChainPriorityFilter, rs.Out, PrefixOut, PrefixAllowOut, false, false},
		{"in", nftables.ChainHookInput, nftables.ChainPriorityFilter, rs.In, PrefixIn, "", true, false},
		{"audit-out", nftables.ChainHookOutput, later, rs.AuditOut, PrefixAuditOut, "", false, true},
		{"audit-in", nftables.ChainHookInput, later, rs.AuditIn, PrefixAuditIn, "", true, true},
	} {
		if ch.audit && len(ch.rules) == 0 {
			continue
		}
		chain := c.AddChain(&nftables.Chain{Name: ch.name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: ch.hook, Priority: ch.priority, Policy: &accept})
		iface := expr.MetaKeyOIFNAME
		if ch.src {
			iface = expr.MetaKeyIIFNAME
		}
		// Replies always pass; loopback (the embedded DNS) too.
		c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: []expr.Any{
			&expr.Meta{Key: iface, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		for _, r := range ch.rules {
			if err := b.rule(chain, &r, ch.src, ch.prefix, ch.allow, ch.audit); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", TableName, err)
	}
	return nil
}

// Remove deletes the agent's table from the namespace, if there.
func Remove(fd int) error {
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer func() { _ = c.CloseLasting() }() // a read-only close: nothing to report
	t := table()
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", TableName, err)
	}
	return nil
}

// Rules counts the rules of the agent's chains in the namespace (-1: no
// table), which a resync compares with what it installed: a table someone
// flushed or removed is put back.
func Rules(fd int) (int, error) {
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return 0, fmt.Errorf("nftables: %w", err)
	}
	defer func() { _ = c.CloseLasting() }() // a read-only close: nothing to report
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return 0, fmt.Errorf("nftables tables: %w", err)
	}
	found := false
	for _, t := range tables {
		found = found || t.Name == TableName
	}
	if !found {
		return -1, nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return 0, fmt.Errorf("nftables chains: %w", err)
	}
	n := 0
	for _, ch := range chains {
		if ch.Table.Name != TableName || !slices.Contains(chainNames, ch.Name) {
			continue
		}
		rules, err := c.GetRules(table(), &nftables.Chain{Name: ch.Name, Table: table()})
		if err != nil {
			return 0, fmt.Errorf("nftables chain %s: %w", ch.Name, err)
		}
		n += len(rules)
	}
	return n, nil
}

type builder struct {
	c     *nftables.Conn
	t     *nftables.Table
	group uint16
	sets  int
}

// rule adds the nftables rules of one Rule: per family, per port match.
// A Drop logs with prefix; in an audit chain it logs and accepts. An
// Accept with Log logs with allow first.
func (b *builder) rule(chain *nftables.Chain, r *Rule, src bool, prefix, allow string, audit bool) error {
	ports := r.Ports
	if ports == nil {
		ports = []Match{{}}
	}
	logPrefix, kind := "", expr.VerdictAccept
	switch {
	case r.Verdict == Drop && audit:
		logPrefix = prefix
	case r.Verdict == Drop:
		logPrefix, kind = prefix, expr.VerdictDrop
	case r.Log && allow != "":
		logPrefix = allow
	}
	for _, fam := range []struct {
		proto byte
		is4   bool
	}{{unix.NFPROTO_IPV4, true}, {unix.NFPROTO_IPV6, false}} {
		var addrs []expr.Any
		switch {
		case r.Any:
			addrs = []expr.Any{}
		case len(r.Addrs) > 0:
			set, err := b.set(r.Addrs, fam.is4)
			if err != nil {
				return err
			}
			if set == nil {
				break
			}
			addrs = append(addrLoad(fam.is4, src), &expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID})
		}
		var matchers [][]expr.Any
		if addrs != nil {
			matchers = append(matchers, addrs)
		}
		for _, rg := range r.Ranges {
			if rg.From().Is4() != fam.is4 {
				continue
			}
			matchers = append(matchers, append(addrLoad(fam.is4, src), rangeExpr(rg)...))
		}
		for _, m := range matchers {
			for _, p := range ports {
				exprs := []expr.Any{
					&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.proto}},
				}
				exprs = append(exprs, m...)
				exprs = append(exprs, portExpr(p)...)
				if logPrefix != "" {
					b.c.AddRule(&nftables.Rule{Table: b.t, Chain: chain, Exprs: append(clone(exprs),
						&expr.Limit{Type: expr.LimitTypePkts, Rate: LogRate, Unit: expr.LimitTimeSecond, Burst: 2 * LogRate},
						&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: b.group, Data: []byte(logPrefix)},
					)})
				}
				b.c.AddRule(&nftables.Rule{Table: b.t, Chain: chain, Exprs: append(exprs, &expr.Counter{}, &expr.Verdict{Kind: kind})})
			}
		}
	}
	return nil
}

// set adds a named set of the family's addresses (nil when it has none).
func (b *builder) set(addrs []netip.Addr, is4 bool) (*nftables.Set, error) {
	var elems []nftables.SetElement
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() != is4 {
			continue
		}
		elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
	}
	if len(elems) == 0 {
		return nil, nil
	}
	b.sets++
	s := &nftables.Set{Table: b.t, Name: fmt.Sprintf("peers%d", b.sets), KeyType: nftables.TypeIPAddr}
	if !is4 {
		s.KeyType = nftables.TypeIP6Addr
	}
	if err := b.c.AddSet(s, elems); err != nil {
		return nil, fmt.Errorf("nftables set %s: %w", s.Name, err)
	}
	return s, nil
}

// addrLoad loads the destination (or source) address into register 1.
func addrLoad(is4, src bool) []expr.Any {
	off, n := uint32(16), uint32(4)
	switch {
	case is4 && src:
		off = 12
	case !is4 && src:
		off, n = 8, 16
	case !is4:
		off, n = 24, 16
	}
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
}

func rangeExpr(r netipx.IPRange) []expr.Any {
	return []expr.Any{&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: r.From().AsSlice(), ToData: r.To().AsSlice()}}
}

var protoNumbers = map[v1.Protocol]byte{v1.ProtocolTCP: unix.IPPROTO_TCP, v1.ProtocolUDP: unix.IPPROTO_UDP, v1.ProtocolSCTP: unix.IPPROTO_SCTP}

// portExpr matches a protocol's destination ports; nothing for Match{}.
func portExpr(m Match) []expr.Any {
	if m.Protocol == "" {
		return nil
	}
	out := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoNumbers[m.Protocol]}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
	lo, hi := binary.BigEndian.AppendUint16(nil, m.Lo), binary.BigEndian.AppendUint16(nil, m.Hi)
	if m.Lo == m.Hi {
		return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo})
	}
	return append(out, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: lo, ToData: hi})
}

// ifname is an interface name as the kernel compares it: IFNAMSIZ bytes.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func clone(e []expr.Any) []expr.Any { return append([]expr.Any(nil), e...) }

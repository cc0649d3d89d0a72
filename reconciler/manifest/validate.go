package manifest

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// checker validates a decoded object and reports where its fields are
// written.
type checker struct{ d *docDecoder }

// has reports whether the field at path is written and not null.
func (c *checker) has(path string) bool {
	p, ok := c.d.at(path)
	return ok && !p.null
}

// errorf reports an error about the value at path, or about a missing field
// when path is not written.
func (c *checker) errorf(path, format string, args ...any) {
	p, ok := c.d.at(path)
	if !ok {
		c.d.missing(path, format, args...)
		return
	}
	line, col := p.line, p.column
	if p.null {
		line, col = p.keyLine, p.keyColumn // a null has no text to point at
	}
	c.d.file.add(Error{Line: line, Column: col, Field: path, Message: fmt.Sprintf(format, args...)})
}

// keyErrorf reports an error about the key of a mapping entry.
func (c *checker) keyErrorf(path, format string, args ...any) {
	p, _ := c.d.at(path)
	c.d.file.add(Error{Line: p.keyLine, Column: p.keyColumn, Field: path, Message: fmt.Sprintf(format, args...)})
}

// errorsUnder reports whether the decoder already found an error at path or
// below it, so validation does not pile a second error onto the same cause.
func (c *checker) errorsUnder(path string) bool {
	for _, e := range c.d.file.errs[c.d.firstError:] {
		if e.Field == path || strings.HasPrefix(e.Field, path+".") || strings.HasPrefix(e.Field, path+"[") {
			return true
		}
	}
	return false
}

// oneOf checks an enumerated value when it is written.
func oneOf[T ~string](c *checker, path string, value T, allowed ...T) {
	if !c.has(path) && value == "" {
		return
	}
	if slices.Contains(allowed, value) {
		return
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	c.errorf(path, "unsupported value %s: must be one of %s", strconv.Quote(truncate(string(value))), strings.Join(names, ", "))
}

func (n *networkPolicy) validate(c *checker) {
	validateHeader(c, &n.p.TypeMeta, &n.p.Metadata)
	if !c.has("spec") {
		c.errorf("spec", "required")
		return
	}
	s := &n.p.Spec
	validateSelector(c, "spec.serviceSelector", &s.ServiceSelector)

	seen := map[v1.PolicyType]int{}
	for i, t := range s.PolicyTypes {
		p := fmt.Sprintf("spec.policyTypes[%d]", i)
		oneOf(c, p, t, v1.PolicyTypeIngress, v1.PolicyTypeEgress)
		if first, dup := seen[t]; dup {
			c.errorf(p, "duplicate value %q (also spec.policyTypes[%d])", t, first)
		}
		seen[t] = i
	}
	types := s.EffectivePolicyTypes()
	if len(s.Ingress) > 0 && !slices.Contains(types, v1.PolicyTypeIngress) {
		c.errorf("spec.ingress", "has no effect: spec.policyTypes does not include Ingress")
	}
	if len(s.Egress) > 0 && !slices.Contains(types, v1.PolicyTypeEgress) {
		c.errorf("spec.egress", "has no effect: spec.policyTypes does not include Egress")
	}
	for i, r := range s.Ingress {
		validatePeers(c, fmt.Sprintf("spec.ingress[%d]", i), "from", r.From, true)
		validatePorts(c, fmt.Sprintf("spec.ingress[%d].ports", i), r.Ports)
		oneOf(c, fmt.Sprintf("spec.ingress[%d].log", i), r.Log, v1.PortLogNone, v1.PortLogBlocked, v1.PortLogAll)
	}
	for i, r := range s.Egress {
		validatePeers(c, fmt.Sprintf("spec.egress[%d]", i), "to", r.To, false)
		validatePorts(c, fmt.Sprintf("spec.egress[%d].ports", i), r.Ports)
		oneOf(c, fmt.Sprintf("spec.egress[%d].log", i), r.Log, v1.PortLogNone, v1.PortLogBlocked, v1.PortLogAll)
	}
	validatePublish(c, s.Publish)
	oneOf(c, "spec.enforcement", s.Enforcement, v1.EnforcementEnforce, v1.EnforcementAudit)
}

func (e *encryptionPolicy) validate(c *checker) {
	validateHeader(c, &e.p.TypeMeta, &e.p.Metadata)
	if !c.has("spec") {
		c.errorf("spec", "required")
		return
	}
	validateSelector(c, "spec.networkSelector", &e.p.Spec.NetworkSelector)
	oneOf(c, "spec.enforcement", e.p.Spec.Enforcement, v1.EnforcementEnforce, v1.EnforcementAudit)
}

// maxNameLength bounds a name: a DNS-1123 label, what Kubernetes accepts
// as a name, and so what is safe to put in Docker label values and network
// names.
const maxNameLength = validation.DNS1123LabelMaxLength

func validateHeader(c *checker, t *v1.TypeMeta, m *v1.ObjectMeta) {
	switch {
	case !c.has("apiVersion"):
		c.errorf("apiVersion", "required: %s", v1.APIVersion)
	case t.APIVersion != v1.APIVersion:
		c.errorf("apiVersion", "unsupported value %s: must be %s", strconv.Quote(truncate(t.APIVersion)), v1.APIVersion)
	}
	switch {
	case !c.has("metadata"):
		c.errorf("metadata", "required")
	case !c.has("metadata.name") || m.Name == "":
		c.errorf("metadata.name", "required")
	// The length first: IsDNS1123Label runs its patterns over any length.
	case len(m.Name) > maxNameLength || len(validation.IsDNS1123Label(m.Name)) > 0:
		c.errorf("metadata.name", "invalid name %s: must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most %d characters",
			strconv.Quote(truncate(m.Name)), maxNameLength)
	}
}

// validateSelector checks a label selector, which must be written: an empty
// one, {}, selects everything, and that should be said, not implied.
func validateSelector(c *checker, path string, s *v1.LabelSelector) {
	if !c.has(path) {
		c.errorf(path, "required (write {} to select everything)")
		return
	}
	for _, k := range sortedKeys(s.MatchLabels) {
		p := path + ".matchLabels[" + strconv.Quote(k) + "]"
		switch {
		case !validLabelKey(k):
			c.keyErrorf(p, "invalid label key %s: must be non-empty and free of whitespace", strconv.Quote(truncate(k)))
		case v1.Bookkeeping(k):
			c.keyErrorf(p, bookkeepingMessage, k)
		}
	}
	for i, r := range s.MatchExpressions {
		p := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
		switch {
		case !c.has(p + ".key"):
			c.errorf(p+".key", "required")
		case !validLabelKey(r.Key):
			c.errorf(p+".key", "invalid label key %s: must be non-empty and free of whitespace", strconv.Quote(truncate(r.Key)))
		case v1.Bookkeeping(r.Key):
			c.errorf(p+".key", bookkeepingMessage, r.Key)
		}
		if !c.has(p + ".operator") {
			c.errorf(p+".operator", "required: one of In, NotIn, Exists, DoesNotExist")
			continue
		}
		oneOf(c, p+".operator", r.Operator, v1.OpIn, v1.OpNotIn, v1.OpExists, v1.OpDoesNotExist)
		switch r.Operator {
		case v1.OpIn, v1.OpNotIn:
			if len(r.Values) == 0 && !c.errorsUnder(p+".values") {
				c.errorf(p+".values", "required: %s needs at least one value", r.Operator)
			}
		case v1.OpExists, v1.OpDoesNotExist:
			if len(r.Values) > 0 {
				c.errorf(p+".values", "must be empty: %s takes no values", r.Operator)
			}
		}
	}
}

// bookkeepingMessage explains why swarmsec's own labels cannot be selected.
const bookkeepingMessage = "%s is a label swarmsec writes itself: selecting on it would make services flip between isolated and restored as swarmsec writes; select on the service's own labels"

// validLabelKey: Docker takes any label key, but an empty one or one with
// whitespace in a selector can only be a typo.
func validLabelKey(k string) bool {
	return k != "" && !strings.ContainsFunc(k, unicode.IsSpace)
}

// validatePeers checks the peers of the rule at rule, listed in its field.
func validatePeers(c *checker, rule, field string, peers []v1.Peer, ingress bool) {
	path := rule + "." + field
	if len(peers) == 0 {
		// A rule that only had rejected fields (ports) gets no second error.
		if !c.errorsUnder(rule) {
			c.errorf(path, "required: a rule names its peers (serviceSelector: {} allows every service)")
		}
		return
	}
	for i, peer := range peers {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case peer.ServiceSelector != nil && peer.IPBlock != nil:
			c.errorf(p, "serviceSelector and ipBlock exclude each other: write them as two peers")
			continue
		case peer.ServiceSelector == nil && peer.IPBlock == nil:
			if !c.errorsUnder(p) {
				c.errorf(p, "needs serviceSelector or ipBlock")
			}
			continue
		case peer.ServiceSelector != nil:
			validateSelector(c, p+".serviceSelector", peer.ServiceSelector)
			continue
		}
		b := p + ".ipBlock"
		if ingress {
			c.errorf(b, "not supported in ingress rules: Swarm cannot tell clients outside the cluster apart; they reach a service only through its published ports, which spec.publish governs")
			continue
		}
		if !c.has(b + ".cidr") {
			if !c.errorsUnder(b) {
				c.errorf(b+".cidr", "required: a CIDR block such as 203.0.113.0/24, 2001:db8::/32, or %s and %s for the whole world", v1.AnyIPv4, v1.AnyIPv6)
			}
			continue
		}
		validateBlock(c, b, peer.IPBlock.CIDR, peer.IPBlock.Except)
	}
}

// validatePorts checks a rule's ports as Kubernetes does: a protocol of
// its own spelling, a numeric port, and an endPort only after a port and
// not below it.
func validatePorts(c *checker, path string, ports []v1.NetworkPolicyPort) {
	if c.has(path) && len(ports) == 0 && !c.errorsUnder(path) {
		c.errorf(path, "empty: omit ports to allow every port, or list the ports to allow")
		return
	}
	seen := map[string]int{}
	for i, pp := range ports {
		p := fmt.Sprintf("%s[%d]", path, i)
		if c.errorsUnder(p) {
			continue // a named port or a wrong type already said why
		}
		oneOf(c, p+".protocol", pp.Protocol, v1.RuleTCP, v1.RuleUDP, v1.RuleSCTP)
		switch {
		case pp.Port == nil && pp.EndPort != nil:
			c.errorf(p+".endPort", "needs port: endPort ends a range that port starts")
			continue
		case pp.Port == nil:
		case *pp.Port < 1 || *pp.Port > 65535:
			c.errorf(p+".port", "out of range %d: must be 1..65535", *pp.Port)
			continue
		case pp.EndPort != nil && (*pp.EndPort < *pp.Port || *pp.EndPort > 65535):
			c.errorf(p+".endPort", "out of range %d: must be %d (port)..65535", *pp.EndPort, *pp.Port)
			continue
		}
		from, to := pp.Range()
		key := fmt.Sprintf("%d-%d/%s", from, to, pp.EffectiveProtocol())
		if first, dup := seen[key]; dup {
			c.errorf(p, "duplicate port (also %s[%d])", path, first)
		}
		seen[key] = i
	}
}

// validateBlock checks a CIDR block written as its network address and
// its exceptions, each a block strictly inside it.
func validateBlock(c *checker, b, cidr string, except []string) {
	block, ok := parseBlock(c, b+".cidr", cidr)
	for j, ex := range except {
		ep := fmt.Sprintf("%s.except[%d]", b, j)
		e, eok := parseBlock(c, ep, ex)
		switch {
		case !ok || !eok:
		case e.Addr().Is4() != block.Addr().Is4():
			c.errorf(ep, "%s is not inside %s: one is IPv4, the other IPv6", e, block)
		case e.Bits() <= block.Bits() || !block.Contains(e.Addr()):
			c.errorf(ep, "%s is not inside %s: an exception must be a smaller block within the cidr", e, block)
		}
	}
}

func validatePublish(c *checker, ports []v1.PublishedPort) {
	seen := map[string]int{}
	for i, pp := range ports {
		p := fmt.Sprintf("spec.publish[%d]", i)
		switch {
		case !c.has(p + ".port"):
			if !c.errorsUnder(p + ".port") {
				c.errorf(p+".port", "required")
			}
		case c.errorsUnder(p + ".port"):
		case pp.Port < 1 || pp.Port > 65535:
			c.errorf(p+".port", "out of range %d: must be 1..65535", pp.Port)
		}
		oneOf(c, p+".protocol", pp.Protocol, v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP)
		oneOf(c, p+".mode", pp.Mode, v1.PublishModeHost, v1.PublishModeIngress)
		oneOf(c, p+".log", pp.Log, v1.PortLogNone, v1.PortLogBlocked, v1.PortLogAll)
		validateSources(c, p+".from", pp.From)
		if pp.Port == 0 {
			continue
		}
		key := fmt.Sprintf("%d/%s", pp.Port, pp.EffectiveProtocol())
		if first, dup := seen[key]; dup {
			c.errorf(p, "duplicate port %s (also spec.publish[%d])", key, first)
		}
		seen[key] = i
	}
}

// validateSources checks a published port's source blocks: each a CIDR
// written as its network address, each exception a block strictly inside it.
func validateSources(c *checker, path string, from []v1.PortSource) {
	if c.has(path) && len(from) == 0 && !c.errorsUnder(path) {
		c.errorf(path, "empty: omit from to admit any source, or list the sources to admit")
		return
	}
	for i, src := range from {
		p := fmt.Sprintf("%s[%d]", path, i)
		if src.IPBlock == nil {
			if !c.errorsUnder(p) {
				c.errorf(p+".ipBlock", "required")
			}
			continue
		}
		b := p + ".ipBlock"
		if !c.has(b + ".cidr") {
			if !c.errorsUnder(b) {
				c.errorf(b+".cidr", "required: a CIDR block such as 203.0.113.0/24 or 2001:db8::/32")
			}
			continue
		}
		validateBlock(c, b, src.IPBlock.CIDR, src.IPBlock.Except)
	}
}

// parseBlock parses a CIDR block and rejects one written with host bits
// set (203.0.113.7/24): it would admit more than it says.
func parseBlock(c *checker, path, text string) (netip.Prefix, bool) {
	pfx, err := netip.ParsePrefix(text)
	switch {
	case err != nil:
		c.errorf(path, "invalid CIDR %s: must be an address and a prefix length, as 203.0.113.0/24 or 2001:db8::/32", strconv.Quote(truncate(text)))
		return pfx, false
	case pfx.Addr().Zone() != "":
		c.errorf(path, "invalid CIDR %s: a zone has no place in a block", strconv.Quote(truncate(text)))
		return pfx, false
	case pfx.Addr().Is4In6():
		c.errorf(path, "invalid CIDR %s: write an IPv4 block as IPv4, %s", strconv.Quote(truncate(text)), netip.PrefixFrom(pfx.Addr().Unmap(), max(pfx.Bits()-96, 0)))
		return pfx, false
	case pfx != pfx.Masked():
		c.errorf(path, "host address in %s: write the block's network address, %s (a single address is /%d)", text, pfx.Masked(), pfx.Addr().BitLen())
		return pfx, false
	}
	return pfx, true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

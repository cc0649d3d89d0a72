package compile

import (
	"slices"
	"strconv"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// Anyone with the Docker socket can create a network with swarmsec's
// labels, so a label is a claim, not a proof: a network is swarmsec's only
// when everything swarmsec makes its networks with holds.

// Trusted reports whether a network carrying swarmsec's managed label is
// one swarmsec could have made: an encrypted, non-attachable Swarm overlay
// of a known purpose, neither ingress nor predefined. Only trusted networks
// are used as managed, or removed.
func Trusted(n *state.Network) bool {
	if n == nil || !n.Managed() || n.Ingress || n.Predefined() || n.Driver != "overlay" || n.Scope != "swarm" || !n.Encrypted() {
		return false
	}
	switch n.Labels[v1.LabelPurpose] {
	case v1.PurposePolicy, v1.PurposeEgress, v1.PurposeIsolated:
		return !n.Attachable
	case v1.PurposeMigration:
		// A temporary network copies the flags of the one it stands in for.
		return n.Labels[v1.LabelMigrating] != ""
	}
	return false
}

// fits reports whether an observed network is the desired one: trusted,
// with its purpose, owner and internal flag.
func fits(n *state.Network, dn *DesiredNetwork) bool {
	return Trusted(n) && n.Labels[v1.LabelPurpose] == dn.Purpose && n.Labels[v1.LabelOwner] == dn.Owner && n.Internal == dn.Internal
}

// avoidForeignNames gives every desired network whose name is held by a
// network that does not fit it (one swarmsec did not create: a squatter,
// or a look-alike carrying swarmsec's labels) another name, derived from
// the first, and says so. The names stay deterministic: the next compile
// picks the same one.
func (c *compiler) avoidForeignNames() {
	// A network others stay on is taken too when the members may not
	// share it with them.
	taken := func(name string, dn *DesiredNetwork) *state.Network {
		for _, n := range c.networks[name] {
			if !fits(n, dn) || (c.stay[n.ID] != nil && !c.usable(n, c.positions(dn.Members))) {
				return n
			}
		}
		return nil
	}
	names := make([]string, 0, len(c.out.Networks))
	for name := range c.out.Networks {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		dn := c.out.Networks[name]
		squatter := taken(name, dn)
		if squatter == nil {
			continue
		}
		alt := name
		for k := 1; ; k++ {
			alt = BoundedName(name, "", true, []string{name, strconv.Itoa(k)})
			if _, used := c.out.Networks[alt]; used {
				continue
			}
			if taken(alt, dn) == nil {
				break
			}
		}
		if who := c.out.Stay[squatter.ID]; fits(squatter, dn) && len(who) > 0 {
			c.out.Notes = append(c.out.Notes, "network "+name+" holds "+strings.Join(who, ", ")+", which stays there: swarmsec uses "+alt+" instead")
		} else {
			c.out.Notes = append(c.out.Notes, "network "+name+" ("+squatter.ID+") exists but swarmsec did not create it as it needs it: it neither uses nor changes it, and uses "+alt+" instead; rename or remove "+name)
		}
		delete(c.out.Networks, name)
		dn.Name = alt
		c.out.Networks[alt] = dn
		for _, ds := range c.out.Services {
			if i := slices.Index(ds.Networks, name); i >= 0 {
				ds.Networks[i] = alt
				slices.Sort(ds.Networks)
			}
		}
	}
}

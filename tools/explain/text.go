package explain

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints the answer for a person.
func (a *Answer) WriteText(w io.Writer) {
	if a.From == Outside {
		a.writeOutside(w)
		return
	}
	from, to := a.From, a.To
	isolated := len(a.FromIsolatedBy) > 0 || len(a.ToIsolatedBy) > 0
	switch {
	case !isolated:
		fmt.Fprintf(w, "%s may reach %s: neither is isolated by any policy, so they talk wherever they share a network\n", from, to)
	case a.Allowed:
		fmt.Fprintf(w, "%s may reach %s (and back: overlay networks carry both ways):\n", from, to)
		for _, r := range a.Reasons {
			fmt.Fprintln(w, "  - "+r.String())
		}
	default:
		fmt.Fprintf(w, "%s may not reach %s:", from, to)
		if len(a.FromIsolatedBy) > 0 {
			fmt.Fprintf(w, " %s is isolated by %s", from, strings.Join(a.FromIsolatedBy, ", "))
		}
		if len(a.ToIsolatedBy) > 0 {
			if len(a.FromIsolatedBy) > 0 {
				fmt.Fprint(w, ";")
			}
			fmt.Fprintf(w, " %s is isolated by %s", to, strings.Join(a.ToIsolatedBy, ", "))
		}
		fmt.Fprintln(w, ", and no rule of theirs names the other")
	}
	shared := strings.Join(a.Shared, ", ")
	switch {
	case len(a.Shared) > 0 && a.Allowed:
		fmt.Fprintf(w, "Now: they share %s.\n", shared)
	case len(a.Shared) > 0:
		fmt.Fprintf(w, "Now: they still share %s; `swarmsec apply` (or a running controller) takes them apart.\n", shared)
	case a.Allowed && isolated && len(a.Managed) > 0:
		fmt.Fprintf(w, "Now: they share no network yet; `swarmsec apply` (or a running controller) connects them on %s.\n", strings.Join(a.Managed, ", "))
	case a.Allowed && isolated:
		fmt.Fprintln(w, "Now: they share no network yet; `swarmsec apply` (or a running controller) connects them.")
	case a.Allowed:
		fmt.Fprintln(w, "Now: they share no network, so they cannot talk.")
	default:
		fmt.Fprintln(w, "Now: they share no network.")
	}
}

func (a *Answer) writeOutside(w io.Writer) {
	if len(a.ToIsolatedBy) == 0 {
		fmt.Fprintf(w, "%s is not isolated: it keeps the ports it publishes:", a.To)
		for _, p := range a.Ports {
			fmt.Fprintf(w, " %s (%s)", p.Port, p.Mode)
		}
		fmt.Fprintln(w)
		return
	}
	policies := strings.Join(a.ToIsolatedBy, ", ")
	if len(a.Ports) == 0 {
		fmt.Fprintf(w, "%s publishes no port: no policy selecting it (%s) lists one in publish\n", a.To, policies)
		return
	}
	for _, p := range a.Ports {
		who := "any source may connect"
		if p.Admit != nil {
			who = fmt.Sprintf("the policies admit %s, logging %s, but until a node agent enforces it any source still connects", p.Admit.Sources(), p.Admit.Log)
		}
		fmt.Fprintf(w, "%s publishes %s in %s mode (policies %s); %s\n", a.To, p.Port, p.Mode, policies, who)
	}
}

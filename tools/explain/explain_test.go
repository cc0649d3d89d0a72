package explain

import (
	"bytes"
	"strings"
	"testing"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// explain answers from the compile it is given, never from the manifests:
// an audit-only policy that the compile left out is no reason, and a
// broad selector does not pick swarmsec's own service, whatever the
// labels say.
func TestAnswersFromTheCompile(t *testing.T) {
	web, api := policytest.StackService("shop", "web"), policytest.StackService("shop", "api")
	self := policytest.StackService("swarmsec", "controller", v1.LabelSelf, "true")
	enforced := policytest.NetPol("web", v1.NetworkPolicySpec{
		ServiceSelector: policytest.Sel("app", "web"),
		Egress:          []v1.EgressRule{{To: []v1.Peer{policytest.Peer("app", "api")}}},
	})
	audit := policytest.NetPol("audit", v1.NetworkPolicySpec{
		ServiceSelector: policytest.Sel("app", "api"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{policytest.Peer("app", "web")}}},
		Enforcement:     v1.EnforcementAudit,
	})
	broad := policytest.NetPol("everyone", v1.NetworkPolicySpec{
		ServiceSelector: v1.LabelSelector{},
		Ingress:         []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: &v1.LabelSelector{}}}}},
	})
	broad.File, broad.Line = "broad.yaml", 3
	st := state.New()
	if err := st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, []*state.Service{web, api, self}); err != nil {
			return err
		}
		return state.ReplacePolicies(tx, []*v1.Policy{enforced, audit, broad})
	}); err != nil {
		t.Fatal(err)
	}
	ask := func(from, to string) (*Answer, string) {
		t.Helper()
		var (
			ans *Answer
			err error
		)
		st.View(func(tx state.ReadTx) {
			var d *compile.Desired
			if d, err = compile.Compile(tx, plan.Enforced); err == nil {
				ans, err = Services(tx, d, from, to)
			}
		})
		if err != nil {
			t.Fatalf("%s %s: %v", from, to, err)
		}
		var out bytes.Buffer
		ans.WriteText(&out)
		return ans, out.String()
	}

	ans, text := ask("shop_web", "shop_api")
	if !ans.Allowed || strings.Contains(text, "policy audit") || !strings.Contains(text, "egress[0] lets it reach shop_api") ||
		!strings.Contains(text, "policy everyone (broad.yaml:3) selects shop_web; ingress[0] admits shop_api") {
		t.Errorf("web, api: %+v\n%s", ans, text)
	}
	if want := []string{"swarmsec-everyone"}; len(ans.Managed) != 1 || ans.Managed[0] != want[0] {
		t.Errorf("web, api managed networks: %v, want %v", ans.Managed, want)
	}
	ans, text = ask("shop_web", "swarmsec_controller")
	if ans.Allowed || len(ans.ToIsolatedBy) != 0 || !strings.Contains(text, "shop_web may not reach swarmsec_controller: shop_web is isolated by everyone, web, and no rule") {
		t.Errorf("web, swarmsec: %+v\n%s", ans, text)
	}
	if _, err := func() (a *Answer, err error) {
		st.View(func(tx state.ReadTx) { a, err = Services(tx, &compile.Desired{}, "shop_web", "nope") })
		return
	}(); err == nil || err.Error() != "no service nope" {
		t.Errorf("unknown service: %v", err)
	}
}

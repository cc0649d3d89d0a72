package dockerapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// engineReplies are error responses Engine 20.10 (API 1.41) sent, status
// and message as seen on the wire.
var engineReplies = []struct {
	name, method, path                                   string
	status                                               int
	msg                                                  string
	notFound, conflict, inUse, outOfSequence, notManager bool
}{
	{"service not found", "GET", "/services/nosuch", 404, "service nosuch not found", true, false, false, false, false},
	{"stale update", "POST", "/services/web/update", 500, "rpc error: code = Unknown desc = update out of sequence", false, false, false, true, false},
	{"update naming a missing network", "POST", "/services/web/update", 500, "network nosuch not found", false, false, false, false, false},
	{"network not found", "GET", "/networks/nosuch", 404, "network nosuch not found", true, false, false, false, false},
	{"network name taken", "POST", "/networks/create", 409, "network with name backend already exists", false, true, false, false, false},
	{"network in use by a service", "DELETE", "/networks/backend", 400, "rpc error: code = FailedPrecondition desc = network fdatr7wge5alqptwlr7zt0lat is in use by service iguk7xrvhzvd7hzdnx0p2g8es", false, false, true, false, false},
	{"network in use by a task", "DELETE", "/networks/backend", 400, "rpc error: code = FailedPrecondition desc = network fdatr7wge5alqptwlr7zt0lat is in use by task zr2tog3f0bndaok0vjwmpp37m", false, false, true, false, false},
	{"ingress in use", "DELETE", "/networks/ingress", 400, "rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service 0luoytjryxem3e3zrjxwa2b64 depends on it", false, false, true, false, false},
	{"local network with endpoints", "DELETE", "/networks/docker_gwbridge", 403, "error while removing network: network docker_gwbridge id be7863f569e4 has active endpoints", false, false, true, false, false},
	{"predefined network", "DELETE", "/networks/bridge", 403, "bridge is a pre-defined network and cannot be removed", false, false, false, false, false},
	{"not in a swarm", "GET", "/services", 503, `This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`, false, false, false, false, true},
}

// TestErrorsMatchTheRealClient replays engine replies to the real client and
// checks that Fake's errors for the same replies read the same: same text,
// same cerrdefs kind, same answers from the Is helpers.
func TestErrorsMatchTheRealClient(t *testing.T) {
	for _, tc := range engineReplies {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != tc.method || !strings.HasSuffix(r.URL.Path, tc.path) {
					t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_ = json.NewEncoder(w).Encode(map[string]string{"message": tc.msg})
			}))
			defer srv.Close()
			cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+srv.Listener.Addr().String()), client.WithVersion("1.41"))
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()

			ctx := context.Background()
			ref := tc.path[strings.LastIndex(tc.path, "/")+1:]
			switch {
			case tc.method == "GET" && tc.path == "/services":
				_, err = cli.ServiceList(ctx, swarm.ServiceListOptions{})
			case tc.method == "GET" && strings.HasPrefix(tc.path, "/services/"):
				_, _, err = cli.ServiceInspectWithRaw(ctx, ref, swarm.ServiceInspectOptions{})
			case strings.HasSuffix(tc.path, "/update"):
				_, err = cli.ServiceUpdate(ctx, "web", swarm.Version{Index: 1}, swarm.ServiceSpec{}, swarm.ServiceUpdateOptions{})
			case tc.method == "GET":
				_, err = cli.NetworkInspect(ctx, ref, network.InspectOptions{})
			case tc.method == "POST":
				_, err = cli.NetworkCreate(ctx, "backend", network.CreateOptions{})
			default:
				err = cli.NetworkRemove(ctx, ref)
			}
			fake := NewDaemonError(tc.status, tc.msg)

			if err == nil || err.Error() != fake.Error() {
				t.Errorf("real client says %v, Fake says %v", err, fake)
			}
			for _, e := range []error{err, fake} {
				got := [5]bool{IsNotFound(e), IsConflict(e), IsInUse(e), IsOutOfSequence(e), IsNotSwarmManager(e)}
				want := [5]bool{tc.notFound, tc.conflict, tc.inUse, tc.outOfSequence, tc.notManager}
				if got != want {
					t.Errorf("%v: not-found, conflict, in-use, out-of-sequence, not-manager = %v, want %v", e, got, want)
				}
			}
			kinds := map[string]func(error) bool{
				"NotFound": cerrdefs.IsNotFound, "Conflict": cerrdefs.IsConflict, "InvalidArgument": cerrdefs.IsInvalidArgument,
				"PermissionDenied": cerrdefs.IsPermissionDenied, "Internal": cerrdefs.IsInternal, "Unavailable": cerrdefs.IsUnavailable,
			}
			for name, is := range kinds {
				if is(err) != is(fake) {
					t.Errorf("cerrdefs.Is%s: real client %v, Fake %v", name, is(err), is(fake))
				}
			}
		})
	}
}

func TestErrorHelpersOnNil(t *testing.T) {
	for name, is := range map[string]func(error) bool{
		"IsNotFound": IsNotFound, "IsConflict": IsConflict, "IsInUse": IsInUse,
		"IsOutOfSequence": IsOutOfSequence, "IsNotSwarmManager": IsNotSwarmManager, "IsNetworkGone": IsNetworkGone,
	} {
		if is(nil) {
			t.Errorf("%s(nil) is true", name)
		}
	}
}

// A network Swarm removed lingers in the engine's list until its tasks let
// go; removing it again answers 500 "not found", which means it is gone.
func TestIsNetworkGone(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{NewDaemonError(http.StatusInternalServerError, "network pluq2pwo0hvt9y349mwzbzpu2 not found"), true},
		{NewDaemonError(http.StatusNotFound, "network nosuch not found"), true},
		{NewDaemonError(http.StatusForbidden, "error while removing network: network web id 1 has active endpoints"), false},
		{NewDaemonError(http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence"), false},
	} {
		if got := IsNetworkGone(tc.err); got != tc.want {
			t.Errorf("IsNetworkGone(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

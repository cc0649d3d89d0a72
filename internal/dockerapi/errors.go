package dockerapi

import (
	"errors"
	"net/http"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"
)

// IsNotFound reports whether the engine answered 404 for the object the call
// was about (service, network, node). It relies on the status code the client
// maps to cerrdefs, as the engine's messages vary.
//
// A ServiceUpdate naming a network that does not exist is NOT a not-found
// error: the engine answers 500 "network X not found" for it, so a reconciler
// does not mistake a missing network for a vanished service.
func IsNotFound(err error) bool {
	return cerrdefs.IsNotFound(err)
}

// IsNetworkGone reports whether a NetworkRemove failed because the network
// is gone already. Right after Swarm removed a network the engine still
// lists it until its tasks let go, and removing it again then answers a
// 500 "network <id> not found": for NetworkRemove, unlike ServiceUpdate, a
// missing network is the object of the call.
func IsNetworkGone(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return IsNotFound(err) || (strings.HasPrefix(msg, "Error response from daemon: network ") && strings.HasSuffix(msg, " not found"))
}

// IsConflict reports whether an object with the same name already exists
// (409, e.g. "network with name X already exists").
func IsConflict(err error) bool {
	return cerrdefs.IsConflict(err)
}

// IsOutOfSequence reports whether a ServiceUpdate carried a stale version.
// The engine sends it as a 500 with a gRPC status in the message, so only
// the message tells it apart from other internal errors.
func IsOutOfSequence(err error) bool {
	return err != nil && strings.Contains(err.Error(), "update out of sequence")
}

// IsInUse reports whether a NetworkRemove was refused because something
// still uses the network: a service or a task (Swarm networks, 400
// FailedPrecondition), a service publishing ports (ingress), or a container
// endpoint (local networks, 403). The status codes overlap with unrelated
// errors, so the message decides.
func IsInUse(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, " is in use by ") ||
		strings.Contains(msg, "has active endpoints") ||
		strings.Contains(msg, "cannot be removed because service")
}

// IsNotSwarmManager reports whether the engine refused a Swarm call because
// it is not a Swarm manager (a worker, or not in a Swarm at all): 503 with
// "This node is not a swarm manager".
func IsNotSwarmManager(err error) bool {
	return cerrdefs.IsUnavailable(err) && err != nil && strings.Contains(err.Error(), "not a swarm manager")
}

// daemonError is what the real client returns for an engine error response:
// the message prefixed as the client does, and a kind derived from the HTTP
// status the same way (client.httpErrorFromStatusCode), so cerrdefs.IsXxx
// answers for a fake exactly as for the engine.
type daemonError struct {
	status int
	msg    string
}

// NewDaemonError returns the error the real client returns for an engine
// answer of this status and message (for fakes of the engine).
func NewDaemonError(status int, msg string) error {
	return &daemonError{status: status, msg: msg}
}

func (e *daemonError) Error() string { return "Error response from daemon: " + e.msg }

func (e *daemonError) Is(target error) bool {
	return errors.Is(kindOfStatus(e.status), target)
}

func kindOfStatus(status int) error {
	if kind := errhttp.ToNative(status); kind != nil {
		return kind
	}
	switch {
	case status >= http.StatusBadRequest && status < http.StatusInternalServerError:
		return cerrdefs.ErrInvalidArgument
	case status >= http.StatusInternalServerError:
		return cerrdefs.ErrInternal
	default:
		return cerrdefs.ErrUnknown
	}
}

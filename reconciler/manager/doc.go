// Package manager is the process swarmsec run is, on a Swarm manager: the
// status server, the wait for the engine, the manifest watcher, the leader
// election and the controller, wired over one store and started in that
// order by Run. The command keeps its flags and its printing; what the
// process does, and in which order, lives here (swarmkit's manager/ is the
// same split).
package manager

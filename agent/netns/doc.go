// Package netns finds the Swarm tasks running on this node and enters
// their network namespaces: what every agent feature that looks inside a
// task (the flows it sees in conntrack, rules installed in its namespace)
// needs, and nothing more.
//
// Tasks come from the node's own engine (a container list filtered by
// Swarm's service label, then an inspect for each sandbox key and
// address); a namespace is entered through its file under
// /var/run/docker/netns, which needs CAP_SYS_ADMIN. Entering is per OS
// thread: Do locks the calling goroutine to its thread, switches, runs the
// function and switches back, and a thread it could not switch back is
// never reused (the runtime discards it). Callers that only need a netlink
// socket in a namespace should pass Namespace.Fd to the socket's dial
// (mdlayher/netlink's Config.NetNS) and enter nothing themselves.
package netns

// Package dns records the lookups local tasks make to Swarm's embedded
// resolver (127.0.0.11), per service: the name, the question's type and
// the class of the answer (a service's VIP, task addresses, an address
// outside the Swarm, NXDOMAIN), aggregated on the node and bounded.
//
// In each task's network namespace the agent keeps a table of its own,
// "inet swarmsec-dns", whose input chain sends the resolver's answers
// (from 127.0.0.11 port 53, after Docker's NAT has put the port back) to
// an NFLOG group, rate-limited in the kernel (a counter before the limit
// says how many answers the agent never got). An answer carries its
// question, so one packet per lookup says all. The agent parses it with
// golang.org/x/net/dns/dnsmessage and names its addresses from the node's
// engine (the verbose inspect of the task's networks).
package dns

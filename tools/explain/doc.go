// Package explain answers "may service A reach service B?" under the
// policies, as kubectl auth can-i answers for RBAC: yes or no, why, and
// what carries it now.
//
// The answer comes from compile's output, never from matching selectors
// here: who is isolated and by which policies, whether the pair is in the
// allowed relation (compile.Desired.Allowed), the rules that put it there
// (compile.Desired.Rules), the managed networks the compile gives both,
// and the published ports it keeps. A second matcher beside compile would
// one day disagree with it (swarmsec's own service, held or audit-only
// policies), and then explain would say what the controller does not do.
// What Swarm shows now (the networks the two share) comes from the store.
package explain

// Package logctx carries a logger in a context, as controller-runtime's
// log.FromContext does: the loop puts there a logger that names the pass
// (pass=<id>, controller-runtime's reconcileID), and everything the pass
// calls logs through it, so one pass's lines can be picked out of a busy
// log.
package logctx

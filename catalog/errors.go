package catalog

import (
	"errors"
	"fmt"
	"time"
)

// Errors beyond the sentinels in catalog.go.
var (
	// ErrSchemaTooOld reports a database whose schema predates the binary
	// while migrations were not allowed to run (Options.SkipMigrate): run
	// `floe migrate`.
	ErrSchemaTooOld = errors.New("catalog: schema is older than binary")
	// ErrUnknownAgent reports a heartbeat or deregistration of a node id
	// that is not registered (for example because it expired): register
	// again.
	ErrUnknownAgent = errors.New("catalog: unknown agent")
	// ErrAgentIDInUse reports a registration under an agent ID whose row
	// belongs to another incarnation with a live heartbeat: another
	// process runs with the same ID, or a crashed one's heartbeat has not
	// yet lapsed.
	ErrAgentIDInUse = errors.New("catalog: agent id in use by a live agent")
	// ErrClosed reports a call on a closed Catalog.
	ErrClosed = errors.New("catalog: closed")
)

// AgentIDInUse is the ErrAgentIDInUse answer to a registration at now,
// naming the live incarnation that holds the ID so that an operator can
// find the other process.
func AgentIDInUse(holder Agent, now time.Time) error {
	return fmt.Errorf("%w: node %d at %s, started %s, last heartbeat %v ago", ErrAgentIDInUse,
		holder.NodeID, holder.Addr, holder.Started.UTC().Format(time.RFC3339Nano), now.Sub(holder.Heartbeat).Round(time.Millisecond))
}

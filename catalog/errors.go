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
	// ErrGroupStateConflict reports a SaveGroupState or DeleteGroupState
	// whose expected version is not the stored one: another agent wrote
	// the group's state since the caller loaded it. The caller's view of
	// the group is stale; it must drop it (and load again if it still
	// coordinates the group).
	ErrGroupStateConflict = errors.New("catalog: group state changed by another writer")
	// ErrGroupStateTooLarge reports a SaveGroupState of more than
	// MaxGroupStateBytes.
	ErrGroupStateTooLarge = errors.New("catalog: group state too large")
	// ErrInvalidSegment reports a CommitSegment or CommitSegments of a
	// segment (or group) no correct flusher builds: no key, a batch
	// outside its object, a key twice in a group. Nothing is committed,
	// and committing the same input again cannot succeed.
	ErrInvalidSegment = errors.New("catalog: invalid segment")
)

// MaxGroupStateBytes bounds one group's stored coordinator state, so that a
// group's row (and the memory of the agent that loads it) stays bounded
// whatever a coordinator writes. It is above what a coordinator keeps for
// one group within its default memory bounds (a thousand members with a few
// KiB of metadata and assignment each).
const MaxGroupStateBytes = 8 << 20

// AgentIDInUse is the ErrAgentIDInUse answer to a registration at now,
// naming the live incarnation that holds the ID so that an operator can
// find the other process.
func AgentIDInUse(holder Agent, now time.Time) error {
	return fmt.Errorf("%w: node %d at %s, started %s, last heartbeat %v ago", ErrAgentIDInUse,
		holder.NodeID, holder.Addr, holder.Started.UTC().Format(time.RFC3339Nano), now.Sub(holder.Heartbeat).Round(time.Millisecond))
}

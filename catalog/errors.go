package catalog

import "errors"

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
	// ErrClosed reports a call on a closed Catalog.
	ErrClosed = errors.New("catalog: closed")
)

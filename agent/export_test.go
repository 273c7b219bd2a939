package agent

import "time"

// SetFrameStallTimeout sets frameStallTimeout for a test and returns the
// function that restores it.
func SetFrameStallTimeout(d time.Duration) (restore func()) {
	old := frameStallTimeout
	frameStallTimeout = d
	return func() { frameStallTimeout = old }
}

// SetInitProducerIDTimeout sets initProducerIDTimeout for a test and
// returns the function that restores it.
func SetInitProducerIDTimeout(d time.Duration) (restore func()) {
	old := initProducerIDTimeout
	initProducerIDTimeout = d
	return func() { initProducerIDTimeout = old }
}

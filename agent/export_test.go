package agent

import "time"

// SetFrameStallTimeout sets frameStallTimeout for a test and returns the
// function that restores it.
func SetFrameStallTimeout(d time.Duration) (restore func()) {
	old := frameStallTimeout
	frameStallTimeout = d
	return func() { frameStallTimeout = old }
}

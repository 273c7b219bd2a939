package agent

import (
	"time"

	"github.com/floebroker/floe/catalog"
)

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

// SetTopicSweepInterval sets topicSweepInterval for a test and returns the
// function that restores it. Agents started after read it.
func SetTopicSweepInterval(d time.Duration) (restore func()) {
	old := topicSweepInterval
	topicSweepInterval = d
	return func() { topicSweepInterval = old }
}

// KnowsTopic returns how many of the topic's partitions the tail index
// holds and whether the topic cache holds it.
func (a *Agent) KnowsTopic(id catalog.TopicID) (tailParts int, cached bool) {
	a.tail.mu.Lock()
	for tp := range a.tail.mu.parts {
		if tp.TopicID == id {
			tailParts++
		}
	}
	a.tail.mu.Unlock()
	_, _, cached = a.topics.get(id)
	return tailParts, cached
}

// LogStartMaxAge is how old a log start an agent serves fetches on may be,
// and how long a DeleteRecords answer waits.
const LogStartMaxAge = maxLogStartAge

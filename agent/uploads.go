package agent

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/floebroker/floe/objstore"
)

// Uploads tracks the segment objects this process is writing, from the
// start of their Put until the agent caches them (OnCommitted). The commit
// follower can learn of a commit's rows a moment before the flusher calls
// OnCommitted; a fetch that then reads such a row waits for the object to
// be cached instead of reading it back from the bucket, so a partition's
// leader serves its tail with no GET at all.
//
// Give the flusher the bucket Bucket returns and the agent the Uploads
// (Deps.Uploads). Safe for concurrent use.
type Uploads struct {
	mu      sync.Mutex
	pending map[string]*upload
}

type upload struct {
	done  chan struct{}
	start time.Time
}

// uploadForget bounds how long an object stays pending: one that was put
// but never committed (the commit failed, the buffer was put again under
// the same key) must not hold entries forever.
const uploadForget = 2 * time.Minute

// uploadWait bounds how long a fetch waits for a pending object to be
// cached before reading it from the bucket. The gap it covers is between
// the catalog commit and OnCommitted: normally well under a millisecond.
const uploadWait = 500 * time.Millisecond

// NewUploads returns an empty tracker.
func NewUploads() *Uploads {
	return &Uploads{pending: make(map[string]*upload)}
}

// Bucket wraps b so that its Puts are tracked.
func (u *Uploads) Bucket(b objstore.Bucket) objstore.Bucket {
	return &trackingBucket{Bucket: b, u: u}
}

func (u *Uploads) start(key string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	for k, up := range u.pending {
		if now.Sub(up.start) > uploadForget {
			close(up.done)
			delete(u.pending, k)
		}
	}
	if _, ok := u.pending[key]; !ok {
		u.pending[key] = &upload{done: make(chan struct{}), start: now}
	}
}

// finish ends tracking of key (cached, or its Put failed) and releases its
// waiters.
func (u *Uploads) finish(key string) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if up, ok := u.pending[key]; ok {
		close(up.done)
		delete(u.pending, key)
	}
}

// wait waits until key is no longer pending, at most uploadWait. It
// reports whether key was pending.
func (u *Uploads) wait(ctx context.Context, key string) bool {
	if u == nil {
		return false
	}
	u.mu.Lock()
	up, ok := u.pending[key]
	u.mu.Unlock()
	if !ok {
		return false
	}
	t := time.NewTimer(uploadWait)
	defer t.Stop()
	select {
	case <-up.done:
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

type trackingBucket struct {
	objstore.Bucket
	u *Uploads
}

var _ objstore.Bucket = (*trackingBucket)(nil)

func (b *trackingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	b.u.start(key)
	err := b.Bucket.Put(ctx, key, r, size)
	if err != nil {
		b.u.finish(key)
	}
	return err
}

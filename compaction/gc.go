package compaction

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/agent/flush"
	"github.com/floebroker/floe/objstore"
)

// gcBatch is how many objects one catalog query hands the sweep.
const gcBatch = 500

// gcPass deletes objects no row has referenced for GCGrace (leaving
// their catalog rows as tombstones), prunes tombstones older than
// TombstoneRetention, expires producers idle for ProducerExpiration (at
// most every producerExpiryInterval), then (every OrphanInterval) lists
// the cluster's key space for objects the catalog does not know that are
// older than GCGrace. The catalog row turns into a tombstone first: a
// crash before the bucket delete leaves an orphan, which the listing finds
// (KnownObjects ignores tombstones); the other order could leave a row
// naming a deleted object.
func (c *Compactor) gcPass(ctx context.Context, renew func() error) error {
	before := c.now().Add(-c.cfg.GCGrace)
	for {
		objs, err := c.cat.UnreferencedObjects(ctx, before, gcBatch)
		if err != nil {
			return fmt.Errorf("compaction: gc: %w", err)
		}
		for _, o := range objs {
			if err := renew(); err != nil {
				return err
			}
			ok, err := c.cat.ForgetObject(ctx, o.ID)
			if err != nil {
				return fmt.Errorf("compaction: gc: %w", err)
			}
			if !ok {
				continue
			}
			if err := c.bucket.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("compaction: gc: delete %s: %w", o.Key, err)
			}
			c.m.gcDeleted.WithLabelValues("unreferenced").Inc()
		}
		if len(objs) < gcBatch {
			break
		}
	}
	for {
		n, err := c.cat.PruneTombstones(ctx, c.now().Add(-c.cfg.TombstoneRetention), gcBatch)
		if err != nil {
			return fmt.Errorf("compaction: gc: %w", err)
		}
		c.m.tombstonesPruned.Add(float64(n))
		if n < gcBatch {
			break
		}
		if err := renew(); err != nil {
			return err
		}
	}
	if every := min(producerExpiryInterval, c.cfg.ProducerExpiration); c.now().Sub(c.lastProducerExpiry) >= every {
		done, err := c.scheduled(ctx, "compaction/producer-expiry", every, renew, c.expireProducers)
		if err != nil {
			return err
		}
		if done {
			c.lastProducerExpiry = c.now()
		}
	}
	if c.now().Sub(c.lastOrphanSweep) < c.cfg.OrphanInterval {
		return nil
	}
	done, err := c.scheduled(ctx, "compaction/orphan-sweep", c.cfg.OrphanInterval, renew, c.orphanSweep)
	if done {
		c.lastOrphanSweep = c.now()
	}
	return err
}

// scheduled runs work due every `every` across the fleet (a scan of the
// producer state, a listing of the bucket) unless another agent did it
// less than `every` ago: its lease is kept that long after the work
// (withLease). The GC lease changes hands between intervals, so a
// schedule kept by each agent would have every agent do it each time.
// renew is the enclosing GC lease's, renewed along with this one. done
// reports that this agent did the work: one that found the lease held, or
// lost it midway, tries again at its next pass, not `every` later — the
// holder may have died just after its run, and waiting a further `every`
// would put up to twice `every` between runs.
func (c *Compactor) scheduled(ctx context.Context, name string, every time.Duration, renew func() error,
	work func(context.Context, func() error) error) (done bool, err error) {
	err = c.withLease(ctx, name, every, func(renewMine func() error) error {
		err := work(ctx, func() error {
			if err := renew(); err != nil {
				return err
			}
			return renewMine()
		})
		done = err == nil
		return err
	})
	return done, err
}

// producerExpiryInterval is how often idle producers are looked for, as
// Kafka's producer.id.expiration.check.interval.ms (10 minutes) does:
// finding them scans the producer state (catalog.Compactor), which no
// index on its write time helps, on purpose, so it runs rarely. (With a
// ProducerExpiration shorter than this, every ProducerExpiration.)
const producerExpiryInterval = 10 * time.Minute

// expiryBatch is how many rows one expiry statement deletes: each is a
// short transaction of its own, so commits are never held up long.
const expiryBatch = 1000

// expireProducers deletes the producer states idle for
// ProducerExpiration, then the producers left with none.
func (c *Compactor) expireProducers(ctx context.Context, renew func() error) error {
	before := c.now().Add(-c.cfg.ProducerExpiration)
	for _, step := range []struct {
		expire  func(context.Context, time.Time, int) (int, error)
		counter prometheus.Counter
	}{
		{c.cat.ExpireProducerStates, c.m.producerStatesExpired},
		{c.cat.ExpireProducers, c.m.producersExpired},
	} {
		for {
			if err := renew(); err != nil {
				return err
			}
			n, err := step.expire(ctx, before, expiryBatch)
			if err != nil {
				return fmt.Errorf("compaction: producer expiry: %w", err)
			}
			step.counter.Add(float64(n))
			if n < expiryBatch {
				break
			}
		}
	}
	return nil
}

// orphanSweep deletes objects of this cluster's key space that the catalog
// never committed (an upload whose agent died before the commit, or a
// merge output whose swap never happened) once older than GCGrace.
func (c *Compactor) orphanSweep(ctx context.Context, renew func() error) error {
	before := c.now().Add(-c.cfg.GCGrace)
	var page []objstore.ObjectInfo
	sweepPage := func() error {
		if len(page) == 0 {
			return nil
		}
		keys := make([]string, len(page))
		for i, o := range page {
			keys[i] = o.Key
		}
		known, err := c.cat.KnownObjects(ctx, keys)
		if err != nil {
			return fmt.Errorf("compaction: orphan sweep: %w", err)
		}
		for _, o := range page {
			if known[o.Key] {
				continue
			}
			// Looked at again right before the delete: an agent whose
			// commit of this key was delayed past the grace (a replay
			// after a crash, a long pause) puts the object again first
			// (flush.Config.MaxUploadAge), and the listing and
			// KnownObjects above may predate that put and the commit
			// after it. Deleting the fresh object would leave committed
			// rows without their bytes. A put between this Stat and the
			// Delete can still be lost: the committing agent checks after
			// its commit and puts the object back (flush's
			// ensureStored).
			cur, err := c.bucket.Stat(ctx, o.Key)
			if errors.Is(err, objstore.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("compaction: orphan sweep: stat %s: %w", o.Key, err)
			}
			if !cur.LastModified.Before(before) {
				continue
			}
			if err := c.bucket.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("compaction: orphan sweep: delete %s: %w", o.Key, err)
			}
			c.m.gcDeleted.WithLabelValues("orphan").Inc()
		}
		page = page[:0]
		return renew()
	}
	for o, err := range c.bucket.List(ctx, "v1/") {
		if err != nil {
			return fmt.Errorf("compaction: orphan sweep: list: %w", err)
		}
		if !flush.IsClusterObject(o.Key, c.cfg.Cluster) || !o.LastModified.Before(before) {
			continue
		}
		page = append(page, o)
		if len(page) == gcBatch {
			if err := sweepPage(); err != nil {
				return err
			}
		}
	}
	return sweepPage()
}

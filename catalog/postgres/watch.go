package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

// listenIdle is how long the listener waits for a notification before it
// checks the connection and re-reads the counter, so a silently dead
// connection or a lost notification costs at most about twice this much
// latency: the re-read is bounded by it too (a query on a connection that
// silently died waits for TCP to give up, a quarter of an hour).
const listenIdle = 15 * time.Second

// Watch delivers commit ids as commits happen anywhere in the fleet. The
// first call starts a dedicated LISTEN connection shared by all watchers.
func (c *Catalog) Watch(ctx context.Context) (<-chan int64, error) {
	if err := c.checkOpen(); err != nil {
		return nil, fmt.Errorf("catalog: watch: %w", err)
	}
	c.startListener()
	ch, ok := c.hub.Subscribe(ctx)
	if !ok {
		return nil, fmt.Errorf("catalog: watch: %w", catalog.ErrClosed)
	}
	return ch, nil
}

// WatchTopicConfigs delivers topic config change numbers as changes
// commit anywhere in the fleet, through the listener Watch uses.
func (c *Catalog) WatchTopicConfigs(ctx context.Context) (<-chan int64, error) {
	if err := c.checkOpen(); err != nil {
		return nil, fmt.Errorf("catalog: watch topic configs: %w", err)
	}
	c.startListener()
	ch, ok := c.configHub.Subscribe(ctx)
	if !ok {
		return nil, fmt.Errorf("catalog: watch topic configs: %w", catalog.ErrClosed)
	}
	return ch, nil
}

func (c *Catalog) startListener() {
	c.listen.Lock()
	defer c.listen.Unlock()
	if c.listen.started || c.closed.Load() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.listen.started = true
	c.listen.cancel = cancel
	c.listen.done = make(chan struct{})
	go func() {
		defer close(c.listen.done)
		c.listenLoop(ctx)
	}()
}

// listenLoop keeps one LISTEN connection alive until ctx ends.
//
// It reconnects within at most backoffMax, however long the catalog has
// been away, so notifications resume as soon as it is back; so that an
// outage of minutes does not log a line per attempt, it warns once when
// the connection is lost, then at most every listenLogEvery, and says
// when it is back.
func (c *Catalog) listenLoop(ctx context.Context) {
	var down time.Time // when the connection was lost (zero: listening)
	var lastLog time.Time
	failures := 0
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := c.listenOnce(ctx, func() {
			// A connection that got as far as listening starts the
			// backoff over.
			attempt = 1
			if failures > 1 {
				c.log.Info("catalog commit listener reconnected", "after", time.Since(down).Round(time.Millisecond), "attempts", failures)
			}
			failures = 0
		})
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		switch failures++; {
		case failures == 1:
			down, lastLog = now, now
			c.log.Warn("catalog commit listener disconnected; reconnecting", "err", err)
		case now.Sub(lastLog) >= listenLogEvery:
			lastLog = now
			c.log.Warn("catalog commit listener still reconnecting", "for", now.Sub(down).Round(time.Second), "attempts", failures, "err", err)
		}
		if backoff(ctx, min(attempt, 10)) != nil {
			return
		}
	}
}

// listenLogEvery is how often the commit listener logs while it cannot
// reconnect.
const listenLogEvery = 30 * time.Second

// listenOnce connects, LISTENs, publishes the current commit id and topic
// config change number (so followers catch up on whatever happened while
// no connection listened) and then relays notifications until the
// connection fails.
func (c *Catalog) listenOnce(ctx context.Context, connected func()) error {
	cfg := c.connCfg
	if c.beforeConnect != nil {
		cfg = cfg.Copy()
		if err := c.beforeConnect(ctx, cfg); err != nil {
			return err
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	// A statement on a connection that silently died would wait for TCP
	// to give up: bound each by the idle period.
	lctx, cancel := context.WithTimeout(ctx, c.listenIdle)
	_, err = conn.Exec(lctx, "LISTEN "+pgx.Identifier{c.channel}.Sanitize()+"; LISTEN "+pgx.Identifier{c.configChannel}.Sanitize())
	cancel()
	if err != nil {
		return err
	}
	publishLatest := func() error {
		qctx, cancel := context.WithTimeout(ctx, c.listenIdle)
		defer cancel()
		var id, config int64
		if err := conn.QueryRow(qctx, "SELECT (SELECT id FROM commit_seq), (SELECT id FROM config_seq)").Scan(&id, &config); err != nil {
			return err
		}
		c.hub.Publish(id)
		c.configHub.Publish(config)
		return nil
	}
	if err := publishLatest(); err != nil {
		return err
	}
	connected()
	for {
		wctx, cancel := context.WithTimeout(ctx, c.listenIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			id, perr := strconv.ParseInt(n.Payload, 10, 64)
			if perr != nil {
				c.log.Warn("catalog commit listener: bad payload", "payload", n.Payload)
				continue
			}
			if n.Channel == c.configChannel {
				c.configHub.Publish(id)
			} else {
				c.hub.Publish(id)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			if err := publishLatest(); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

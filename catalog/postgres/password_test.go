package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/floebroker/floe/catalog"
)

// passwordRole creates a login role with password in the group
// floe_password_auth, whose members the test server makes give their
// password (scripts/services.sh; everyone else is trusted), and makes it
// the owner of the schema of schemaURL. It returns schemaURL with the
// role as its user and no password, and an admin connection. The role is
// dropped at cleanup.
func passwordRole(t *testing.T, schemaURL, password string) (string, *pgx.Conn) {
	t.Helper()
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	var b [6]byte
	rand.Read(b[:])
	role := "floe_pw_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD '"+password+"' IN ROLE floe_password_auth"); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42704" { // undefined_object
			failOrSkip(t, "the test server has no role floe_password_auth, so it checks no password: run scripts/services.sh start, which adds it to a running server")
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Give the schema back, so freshSchema's cleanup drops it.
		for _, q := range []string{"REASSIGN OWNED BY " + role + " TO CURRENT_USER", "DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := admin.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	u, err := url.Parse(schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ALTER SCHEMA "+u.Query().Get("search_path")+" OWNER TO "+role); err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	// A server that lets the role in without its password proves nothing.
	wrong := *u
	wrong.User = url.UserPassword(role, "wrong-"+password)
	if conn, err := pgx.Connect(ctx, wrong.String()); err == nil {
		conn.Close(ctx)
		failOrSkip(t, "the test server let %s in with a wrong password: its pg_hba.conf lacks scripts/services.sh's floe_password_auth line: run scripts/services.sh start, which adds it and reloads a running server", role)
	}
	return u.String(), admin
}

// failOrSkip fails under CI, where the services must be as
// scripts/services.sh starts them, and skips elsewhere.
func failOrSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (skipped outside CI)", args...)
}

// writePassword replaces the password file as the deployments do: a new
// file renamed over the old one.
func writePassword(t *testing.T, path, password string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestPasswordFileRotation: the catalog password is changed under running
// catalogs (RDS rotating its master password, a GCP db_password_version
// bump). Open connections stay logged in, but the pool opens new ones all
// the time (connection lifetime and idle limits, a reconnect), and with
// the password in the URL every one of those failed authentication until
// the agent restarted: heartbeats, commits, the LISTEN reconnect. With
// --catalog.password-file the file is read at each new connection, so
// rewriting it is enough, for the pool and the LISTEN connection alike.
func TestPasswordFileRotation(t *testing.T) {
	const oldPassword, newPassword = "old-Secret-1", "new-Secret-2"
	schema := freshSchema(t)
	noPassword, admin := passwordRole(t, schema, oldPassword)
	ctx := t.Context()
	withPassword, err := url.Parse(noPassword)
	if err != nil {
		t.Fatal(err)
	}
	withPassword.User = url.UserPassword(withPassword.User.Username(), oldPassword)
	file := filepath.Join(t.TempDir(), "password")
	writePassword(t, file, oldPassword)

	fromFile := openTest(t, noPassword, catalog.Options{PasswordFile: file, ApplicationName: "floe-pwfile"})
	fromFile.listenIdle = 200 * time.Millisecond
	inURL := openTest(t, withPassword.String(), catalog.Options{SkipMigrate: true})
	// A catalog's own commits reach its Watch without the LISTEN
	// connection: another (the superuser's, trusted) commits, so what
	// fromFile's Watch delivers came through its listener.
	other := openTest(t, schema, catalog.Options{SkipMigrate: true})
	topic, err := fromFile.CreateTopic(ctx, catalog.TopicSpec{Name: "r", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := fromFile.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(c *Catalog, key string) int64 {
		t.Helper()
		res, err := c.CommitSegment(ctx, oneBatchSegment(key, topic.ID))
		if err != nil {
			t.Fatalf("commit %s: %v", key, err)
		}
		return res.CommitID
	}
	waitCommit(t, ch, commit(other, "a"), 10*time.Second)
	if err := inURL.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	// The rotation: the password changes, then the file.
	if _, err := admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{withPassword.User.Username()}.Sanitize()+" PASSWORD '"+newPassword+"'"); err != nil {
		t.Fatal(err)
	}
	writePassword(t, file, newPassword)
	// Every connection from now on is new: the pools' and the listener's.
	fromFile.pool.Reset()
	inURL.pool.Reset()
	// The listener may be between connections (its 200 ms idle check can
	// time out on a loaded machine and reconnect): wait until there is
	// one to terminate.
	var killed int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = 'floe-pwfile/listen'`).Scan(&killed)
		if err != nil {
			t.Fatal(err)
		}
		if killed > 0 || time.Now().After(deadline) {
			break
		}
	}
	if killed != 1 {
		t.Fatalf("terminated %d LISTEN connections, want 1", killed)
	}

	// The password in the URL is dead: the old way, every new connection
	// fails until a restart.
	err = inURL.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("ping with the old password in the URL after the rotation: %v, want password authentication failed", err)
	}
	// The file's new password opens new connections: commits go on, and
	// the listener reconnects (and then publishes the latest commit id,
	// so c arrives even if it was notified while the listener was down).
	commit(fromFile, "b")
	waitCommit(t, ch, commit(other, "c"), 10*time.Second)
	if _, err := fromFile.Topic(ctx, "r"); err != nil {
		t.Fatal(err)
	}
}

// TestPasswordFileErrors: a password file that cannot be read, or is
// empty, fails the connection with an error naming the file (Open's
// first connection here), instead of trying the URL's password or none;
// one trailing newline (CRLF included) is not part of the password.
func TestPasswordFileErrors(t *testing.T) {
	u := freshSchema(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for path, want := range map[string]string{
		missing: "read password file: open " + missing,
		empty:   "password file " + empty + " is empty",
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		c, err := Open(ctx, u, catalog.Options{PasswordFile: path})
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("Open with password file %s succeeded", path)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open with password file %s: %v, want %q", path, err, want)
		}
	}

	for content, want := range map[string]string{"pw": "pw", "pw\n": "pw", "pw\r\n": "pw", "pw\n\n": "pw\n", " pw ": " pw "} {
		f := filepath.Join(dir, "pw")
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := pgx.ParseConfig("postgres://floe:url-password@127.0.0.1:1/floe")
		if err != nil {
			t.Fatal(err)
		}
		if err := readPassword(cfg, f); err != nil || cfg.Password != want {
			t.Errorf("password file holding %q: password %q (%v), want %q", content, cfg.Password, err, want)
		}
	}
}

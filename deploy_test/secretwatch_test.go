package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The agents read the catalog password from a file at each new catalog
// connection (--catalog.password-file), and the secret watch keeps that
// file up to date. A rotated password (RDS rotates its managed master
// password every 7 days; GCP's db_password_version changes the Cloud SQL
// user's password before the instance group rolls) used to reach an agent
// only through a restart, 10 to 20 minutes after the rotation on AWS and
// never on GCP, and meanwhile every new catalog connection failed
// authentication, on every agent at once.

// writtenFiles maps each path a rendered template writes through
// `cat > PATH <<'TAG'` to what it writes.
func writtenFiles(t *testing.T, rendered string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, m := range regexp.MustCompile(`cat > (\S+) <<'([A-Z]+)'\n`).FindAllStringSubmatchIndex(rendered, -1) {
		path, tag := rendered[m[2]:m[3]], rendered[m[4]:m[5]]
		body := rendered[m[1]:]
		end := strings.Index(body, "\n"+tag+"\n")
		if end < 0 {
			t.Fatalf("heredoc %s for %s is not terminated", tag, path)
		}
		files[path] = body[:end+1]
	}
	return files
}

// fileNamed returns a written file whose path matches re.
func fileNamed(t *testing.T, files map[string]string, re string) (string, string) {
	t.Helper()
	for path, body := range files {
		if regexp.MustCompile(re).MatchString(path) {
			return path, body
		}
	}
	t.Fatalf("no file matching %s is written (files: %v)", re, keys(files))
	return "", ""
}

// systemdSeconds reads a systemd time span of one number and unit.
func systemdSeconds(span string) (int, bool) {
	m := regexp.MustCompile(`^(\d+)\s*(s|sec|m|min|h)?$`).FindStringSubmatch(span)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(m[1])
	switch m[2] {
	case "m", "min":
		n *= 60
	case "h":
		n *= 3600
	}
	return n, true
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// Stand-ins for the cloud: the metadata servers, the secret stores (the
// password is $STUB/password) and systemctl, which logs its calls.
var secretWatchStubs = map[string]string{
	"curl": `#!/bin/bash
for a in "$@"; do case "$a" in http*) url=$a ;; esac; done
case "$url" in
*/latest/api/token) echo imds-token ;;
*/placement/region) echo us-east-1 ;;
*/service-accounts/default/token) echo '{"access_token":"gcp-token","expires_in":3599,"token_type":"Bearer"}' ;;
https://secretmanager.googleapis.com/v1/*/versions/latest:access)
	printf '{\n  "name": "projects/1/secrets/s/versions/2",\n  "payload": {\n    "data": "%s",\n    "dataCrc32c": "123"\n  }\n}\n' "$(base64 -w0 "$STUB/password")" ;;
*) echo "unexpected curl $*" >&2; exit 1 ;;
esac
`,
	"aws": `#!/bin/bash
[[ "$1 $2" == "secretsmanager get-secret-value" ]] || { echo "unexpected aws $*" >&2; exit 1; }
python3 -c 'import json, sys; print(json.dumps({"SecretString": json.dumps({"username": "floe admin", "password": open(sys.argv[1]).read()}), "VersionId": "v"}))' "$STUB/password"
`,
	"systemctl": `#!/bin/bash
echo "$*" >>"$STUB/systemctl.log"
`,
}

// TestSecretWatchRewritesPasswordFile runs each template's secret watch
// (its paths under a temporary directory, the cloud stubbed): it writes the
// password to the file the agent container reads, readable by the image's
// user only, replaces it by a rename when the secret changes and leaves it
// alone when not, and restarts nothing. The agent must be run with that
// file, its directory mounted into the container, the watch run before the
// agent starts and by a timer every minute or two.
func TestSecretWatchRewritesPasswordFile(t *testing.T) {
	bash := lookTool(t, "bash", "install bash")
	lookTool(t, "python3", "install python3")
	// The watch gives the file to the image's group (65532), which only
	// root may do: run as another user (CI runners, a developer's
	// CI=true make test), the script under test gives it to the test's
	// own group instead, and the owner root gives way to the test's user.
	// The rename, mode and rewrite checks hold either way.
	fileGid := 65532
	ownership := strings.NewReplacer()
	if os.Geteuid() != 0 {
		fileGid = os.Getgid()
		ownership = strings.NewReplacer(
			"65532", strconv.Itoa(fileGid),
			"-o root ", "",
			"os.fchown(fd, 0, gid)", "os.fchown(fd, -1, gid or -1)")
	}
	templates, _ := filepath.Glob(filepath.Join(root(t), "terraform", "*", "templates", "*.tftpl"))
	if len(templates) < 2 {
		t.Fatalf("found %d user data templates, want the AWS and the GCP one", len(templates))
	}
	const passwordFile = "/run/floe/catalog/password"
	for _, tmplPath := range templates {
		rel, _ := filepath.Rel(root(t), tmplPath)
		t.Run(rel, func(t *testing.T) {
			rendered := renderTemplate(t, tmplPath)
			files := writtenFiles(t, rendered)
			watchPath, watch := fileNamed(t, files, `secret-watch(\.sh)?$`)
			if !strings.Contains(watch, passwordFile) {
				t.Fatalf("%s does not write %s", watchPath, passwordFile)
			}

			// The agent reads the file the watch writes, from the
			// directory (a single-file bind mount keeps the file a
			// rename replaced), and its start script runs the watch.
			var start string
			for _, body := range files {
				if strings.Contains(body, "docker run") {
					start = body
				}
			}
			if !regexp.MustCompile(`(?m)^\s*--catalog\.password-file '?` + passwordFile + `'?$`).MatchString(start) {
				t.Errorf("the agent is not run with --catalog.password-file %s", passwordFile)
			}
			if !strings.Contains(start, "--volume /run/floe/catalog:/run/floe/catalog:ro") {
				t.Errorf("the agent container does not mount /run/floe/catalog read-only")
			}
			if i, j := strings.Index(start, watchPath), strings.Index(start, "docker run"); i < 0 || i > j {
				t.Errorf("the agent's start script does not run %s before the agent", watchPath)
			}
			_, timer := fileNamed(t, files, `/floe-secret-watch\.timer$`)
			m := regexp.MustCompile(`(?m)^OnUnitActiveSec=(\S+)$`).FindStringSubmatch(timer)
			if m == nil {
				t.Fatalf("floe-secret-watch.timer has no OnUnitActiveSec")
			}
			if s, ok := systemdSeconds(m[1]); !ok || s > 120 {
				t.Errorf("floe-secret-watch.timer runs every %s, want at most 2min: until the file has a new password, an agent's new catalog connections fail", m[1])
			}
			if !regexp.MustCompile(`systemctl (enable|restart) .*floe-secret-watch\.timer`).MatchString(rendered) {
				t.Errorf("floe-secret-watch.timer is not enabled")
			}

			dir := t.TempDir()
			stub := filepath.Join(dir, "stub")
			bin := filepath.Join(dir, "bin")
			for _, d := range []string{stub, bin} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, src := range secretWatchStubs {
				if err := os.WriteFile(filepath.Join(bin, name), []byte(src), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			script := filepath.Join(dir, "secret-watch.sh")
			run := func(password string) {
				t.Helper()
				if err := os.WriteFile(filepath.Join(stub, "password"), []byte(password), 0o600); err != nil {
					t.Fatal(err)
				}
				src := ownership.Replace(strings.ReplaceAll(watch, "/run/floe", filepath.Join(dir, "run", "floe")))
				if err := os.WriteFile(script, []byte(src), 0o600); err != nil {
					t.Fatal(err)
				}
				out, err := runCmd(t, time.Minute, []string{"STUB=" + stub, "PATH=" + bin + ":" + os.Getenv("PATH")}, bash, script)
				if err != nil {
					t.Fatalf("%s: %v\n%s", watchPath, err, indent(out))
				}
			}
			file := filepath.Join(dir, strings.TrimPrefix(passwordFile, "/"))
			check := func(want string) *syscall.Stat_t {
				t.Helper()
				got, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Fatalf("password file holds %q, want %q", got, want)
				}
				fi, err := os.Stat(file)
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				// The image runs as the distroless nonroot user (65532).
				if fi.Mode().Perm() != 0o440 || st.Gid != uint32(fileGid) {
					t.Errorf("password file mode %v, group %d: want readable by group %d and nobody else", fi.Mode().Perm(), st.Gid, fileGid)
				}
				return st
			}

			run("first-Password1")
			first := check("first-Password1")
			// On AWS the watch also writes the catalog URL, without the
			// password, for the container's environment.
			if env, err := os.ReadFile(filepath.Join(dir, "run", "floe", "env")); err == nil &&
				(strings.Contains(string(env), "first-Password1") || !strings.Contains(string(env), "FLOE_CATALOG=postgres://floe%20admin@")) {
				t.Errorf("env file: %s, want FLOE_CATALOG=postgres://floe%%20admin@… without the password", env)
			}
			run("first-Password1")
			if again := check("first-Password1"); again.Ino != first.Ino {
				t.Errorf("an unchanged password was written again")
			}
			run("second-Password2")
			if second := check("second-Password2"); second.Ino == first.Ino {
				t.Errorf("the new password was written in place, not renamed over the old file: the agent may read it half written")
			}
			if log, err := os.ReadFile(filepath.Join(stub, "systemctl.log")); err == nil {
				t.Errorf("the secret watch ran systemctl (the agent reads the new password without a restart):\n%s", indent(string(log)))
			}
		})
	}
}

// TestAgentStartKeepsLastPassword runs each start script from its secret
// watch up to the agent's arguments with a watch that fails (the secret
// store is reached through the same NAT as the registry, and a NAT outage
// is when TestAgentStartKeepsCachedImage's fallback matters): a restart must
// go on with the files the last start left on tmpfs, and fail only without
// them. The watch ran under set -e, so every restart during such an outage
// failed although the agent had its password.
func TestAgentStartKeepsLastPassword(t *testing.T) {
	bash := lookTool(t, "bash", "install bash")
	for _, rel := range []string{"terraform/aws/templates/user-data.sh.tftpl", "terraform/gcp/templates/startup.sh.tftpl"} {
		t.Run(rel, func(t *testing.T) {
			files := writtenFiles(t, renderTemplate(t, filepath.Join(root(t), rel)))
			watchPath, _ := fileNamed(t, files, `secret-watch(\.sh)?$`)
			var start string
			for _, body := range files {
				if strings.Contains(body, "docker run") {
					start = body
				}
			}
			from := strings.Index(start, watchPath)
			to := strings.Index(start, "agent_args=(")
			if from < 0 || to < from {
				t.Fatalf("the start script does not run %s before agent_args=(", watchPath)
			}
			from = strings.LastIndex(start[:from], "\n") + 1

			dir := t.TempDir()
			watch := filepath.Join(dir, "secret-watch")
			if err := os.WriteFile(watch, []byte("#!/bin/sh\necho 'secret store unreachable' >&2\nexit 1\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			run := filepath.Join(dir, "run", "floe")
			prefix := strings.ReplaceAll(strings.Replace(start[from:to], watchPath, watch, 1), "/run/floe", run)
			script := filepath.Join(dir, "start.sh")
			if err := os.WriteFile(script, []byte("set -euo pipefail\n"+prefix+"echo started\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, cached := range []bool{true, false} {
				if err := os.RemoveAll(run); err != nil {
					t.Fatal(err)
				}
				if cached {
					// The last start's files: the password, and on AWS the
					// catalog URL, which the watch writes there too.
					if err := os.MkdirAll(filepath.Join(run, "catalog"), 0o700); err != nil {
						t.Fatal(err)
					}
					for name, data := range map[string]string{"catalog/password": "last-Password1", "env": "FLOE_CATALOG=postgres://floe@db:5432/floe\n"} {
						if err := os.WriteFile(filepath.Join(run, name), []byte(data), 0o600); err != nil {
							t.Fatal(err)
						}
					}
				}
				out, err := runCmd(t, 30*time.Second, nil, bash, script)
				switch started := err == nil && strings.Contains(out, "started"); {
				case cached && !started:
					t.Errorf("with the secret store unreachable and the last start's password file in place, the agent does not start (%v):\n%s\n--- start ---\n%s", err, indent(out), indent(prefix))
				case !cached && started:
					t.Errorf("with the secret store unreachable and no password file, the start goes on:\n%s", indent(out))
				}
			}
		})
	}
}

// STAND-IN remote.Command and remote.CopyToRemote, over the openssh client binary.
//
// Like local.Command in main.go, this is NOT pulumi-command: it imitates v1.x where the
// k3s-rancher program depends on it. Each behaviour names the pulumi-command source it
// imitates (github.com/pulumi/pulumi-command, provider/pkg/provider/remote/, read at the
// commits given; line numbers are of those files):
//
//   - create runs `create`; update runs `update`, else `create`; delete runs the `delete`
//     saved in state, with the connection and stdin saved in state (commandController.go
//     @c625126f: Create, Update, Delete). A change of `triggers` replaces
//     (common/inputs.go: Triggers `provider:"replaceOnChanges"`); any other change, the
//     connection included, updates (command.go @bdee8868: Connection is only
//     `provider:"secret"`).
//   - SSH setenv (commandOutputs.go @34948166, func run): a refused variable of
//     `environment` is an error logged and returned, the command does not run (l.42-49);
//     PULUMI_COMMAND_STDOUT/STDERR, sent when addPreviousOutputInEnv is unset or true and the
//     previous stdout/stderr is not empty, are sent "optimistically": a refusal is a logged
//     warning and the command runs (l.51-71). The stand-in cannot tell whether sshd would
//     accept a variable, so it assumes a stock sshd (AcceptEnv LANG LC_*): every setenv is
//     refused. addPreviousOutputInEnv defaults to true (command.go: SetDefault).
//   - the command's stdout and stderr are logged line by line as ephemeral Info status
//     messages unless `logging` leaves them out (commandOutputs.go l.77-93, logging.go:
//     ShouldLogStdout/ShouldLogStderr; util/util.go: LogOutput uses LogStatus); outputs
//     stdout/stderr lose one trailing newline (l.103-106); a failure is
//     "<exit error>: running <command>:\n<stdout and stderr>" (l.100-101).
//   - dialing retries up to connection.dialErrorLimit (default 10, -1 unlimited) times, each
//     attempt bounded by perDialTimeout seconds (default 15, 0 = no bound), with a 100 ms
//     delay growing 1.5x up to 5 s, logging "Dial N/M failed: retrying", then fails "after N
//     failed attempts: <error>" (connection.go @e1fd5afe: dialWithRetry, Dial; pulumi sdk
//     go/common/util/retry/until.go: DefaultDelay/DefaultBackoff/DefaultMaxDelay). The
//     stand-in counts an ssh exit 255 with openssh's connect/handshake/auth messages as a
//     failed dial; the texts are openssh's, not Go's x/crypto/ssh.
//   - CopyToRemote (copyController.go @09d28316: Create, Update, sftpCopy, copyFile) copies
//     a file asset to remotePath: into remotePath/<name> when remotePath is a directory,
//     else to remotePath itself, overwriting; the parent directory must exist (sftp.Create
//     creates no directories); a relative remotePath is relative to the SSH user's home (the
//     SFTP server's working directory). An update copies only when the asset's hash or
//     remotePath changed. No delete: the file stays. The stand-in writes through the login
//     shell (`cat >`) instead of the SFTP subsystem: same user, same umask-default mode.
//
// Not implemented: proxy (bastion), agent auth, password auth, archives, text assets.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	remoteCommand = "command:remote:Command"
	copyToRemote  = "command:remote:CopyToRemote"
)

var copyInputKeys = []string{"connection", "source", "remotePath", "triggers"}

// keysFor lists the inputs whose change is a diff for the resource type.
func keysFor(typ string) []string {
	switch typ {
	case copyToRemote:
		return copyInputKeys
	case remoteCommand:
		return append([]string{"connection"}, inputKeys...)
	}
	return inputKeys
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// intOr reads a number input; fallback when it is absent or not a number.
func intOr(v any, fallback int) int {
	if f, ok := v.(float64); ok {
		return int(f)
	}
	return fallback
}

// withConnectionDefaults fills in what pulumi-command's Check fills in (connection.go:
// SetDefault user root, port 22, dialErrorLimit 10, perDialTimeout 15), so that state and
// diffs hold the same values as with the real provider.
func withConnectionDefaults(conn map[string]any) map[string]any {
	if conn == nil {
		return nil
	}
	out := make(map[string]any, len(conn)+4)
	for k, v := range conn {
		out[k] = v
	}
	for k, v := range map[string]any{"user": "root", "port": 22.0, "dialErrorLimit": 10.0, "perDialTimeout": 15.0} {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

// sshArgv is the ssh command line for a connection, up to the remote command; cleanup
// removes the key and known_hosts files it wrote.
func sshArgv(conn map[string]any) ([]string, func(), error) {
	if conn == nil || str(conn["host"]) == "" {
		return nil, func() {}, fmt.Errorf("connection.host is required")
	}
	if conn["proxy"] != nil {
		return nil, func() {}, fmt.Errorf("the stand-in command provider does not implement connection.proxy")
	}
	dir, err := os.MkdirTemp("", "k3sr-standin-ssh-")
	if err != nil {
		return nil, func() {}, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	user := str(conn["user"])
	if user == "" {
		user = "root"
	}
	port := strconv.Itoa(intOr(conn["port"], 22))
	host := str(conn["host"])
	argv := []string{"ssh", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p", port, "-l", user}
	if timeout := intOr(conn["perDialTimeout"], 15); timeout > 0 {
		argv = append(argv, "-o", "ConnectTimeout="+strconv.Itoa(timeout))
	}
	if key := str(conn["privateKey"]); key != "" {
		path := filepath.Join(dir, "id")
		if !strings.HasSuffix(key, "\n") {
			key += "\n"
		}
		if err := os.WriteFile(path, []byte(key), 0o600); err != nil {
			cleanup()
			return nil, func() {}, err
		}
		argv = append(argv, "-i", path, "-o", "IdentitiesOnly=yes")
	}
	if hostKey := str(conn["hostKey"]); hostKey != "" {
		path := filepath.Join(dir, "known_hosts")
		line := fmt.Sprintf("[%s]:%s %s\n", host, port, strings.TrimSpace(hostKey))
		if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
			cleanup()
			return nil, func() {}, err
		}
		argv = append(argv, "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+path)
	} else {
		argv = append(argv, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null")
	}
	return append(argv, host), cleanup, nil
}

// openssh's messages (exit 255) for a connection that was never established: what
// x/crypto/ssh's ssh.Dial returns an error for (TCP connect, banner/key exchange, host key,
// authentication).
var dialFailures = []string{
	"ssh: connect to host", "ssh: Could not resolve hostname", "kex_exchange_identification",
	"Connection timed out during banner exchange", "banner exchange", "Connection closed by",
	"Connection reset by", "Permission denied", "Host key verification failed",
	"No route to host", "Connection refused",
}

func isDialFailure(exitCode int, stdout, stderr string) bool {
	if exitCode != 255 || stdout != "" {
		return false
	}
	for _, marker := range dialFailures {
		if strings.Contains(stderr, marker) {
			return true
		}
	}
	return false
}

// attempt is one ssh run: its outputs, and whether it failed before connecting.
type attempt struct {
	stdout, stderr, combined, logged string
	exitCode                         int
	neverConnected                   bool // the dial limit was reached
	err                              error
}

// runSSH runs one ssh client to the end. Like x/crypto/ssh's session.Run in
// commandOutputs.go (l.95), a started command is not stopped by a cancelled request: an
// engine killed mid-install leaves the provider (an orphan) running the command until it
// ends or the provider process dies.
func runSSH(argv []string, remote string, stdin io.Reader, logStdout, logStderr bool) attempt {
	cmd := exec.Command(argv[0], append(argv[1:], "--", remote)...) //nolint:gosec // the point
	cmd.Stdin = stdin
	var stdout, stderr, combined, logged bytes.Buffer
	outW := []io.Writer{&stdout, &combined}
	if logStdout {
		outW = append(outW, &logged)
	}
	errW := []io.Writer{&stderr, &combined}
	if logStderr {
		errW = append(errW, &logged)
	}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(outW...), io.MultiWriter(errW...)
	err := cmd.Run()
	a := attempt{stdout: stdout.String(), stderr: stderr.String(), combined: combined.String(), logged: logged.String(), err: err}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		a.exitCode = exitErr.ExitCode()
	}
	return a
}

// dialing runs ssh until a connection is made (connection.go: dialWithRetry): an attempt
// that fails to connect is retried up to dialErrorLimit times.
func dialing(ctx context.Context, log logger, conn map[string]any, run func() attempt) attempt {
	limit := intOr(conn["dialErrorLimit"], 10)
	delay, maxDelay := 100*time.Millisecond, 5*time.Second
	for dials := 1; ; dials++ {
		a := run()
		if a.err == nil || !isDialFailure(a.exitCode, a.stdout, a.stderr) {
			return a
		}
		if limit > -1 && dials > limit {
			a.err = fmt.Errorf("after %d failed attempts: %s", dials-1, strings.TrimSpace(a.stderr))
			a.neverConnected = true
			return a
		}
		shown := "inf"
		if limit > -1 {
			shown = strconv.Itoa(limit)
		}
		log.status(fmt.Sprintf("Dial %d/%s failed: retrying", dials, shown))
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			a.err, a.neverConnected = ctx.Err(), true
			return a
		}
		delay = min(time.Duration(float64(delay)*1.5), maxDelay)
	}
}

func logLines(log logger, text string) {
	scanner := bufio.NewScanner(strings.NewReader(text))
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for scanner.Scan() {
		log.status(scanner.Text())
	}
}

// setenvRefused says why a variable did not reach the command: the stand-in's sshd, like a
// stock one, accepts only the variables its AcceptEnv lists.
func setenvRefused(log logger, key string, fatal bool) error {
	msg := fmt.Sprintf("Unable to set '%s': the SSH server accepts only the variables listed in its "+
		"AcceptEnv (stand-in: every setenv is refused, as by a stock sshd)", key)
	if fatal {
		log.error(msg)
	} else {
		log.warning(msg)
	}
	return fmt.Errorf("could not set environment variable %q: ssh: setenv failed", key)
}

// runRemote runs command over SSH with the resource's state in inputs: for an update or a
// delete, inputs["stdout"]/["stderr"] are the outputs of the previous run.
func runRemote(ctx context.Context, log logger, inputs map[string]any, command string) (string, string, error) {
	if env, ok := inputs["environment"].(map[string]any); ok && len(env) > 0 {
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		return "", "", setenvRefused(log, keys[0], true)
	}
	if add, ok := inputs["addPreviousOutputInEnv"].(bool); !ok || add {
		if str(inputs["stdout"]) != "" {
			_ = setenvRefused(log, "PULUMI_COMMAND_STDOUT", false)
		}
		if str(inputs["stderr"]) != "" {
			_ = setenvRefused(log, "PULUMI_COMMAND_STDERR", false)
		}
	}
	conn := asMap(inputs["connection"])
	argv, cleanup, err := sshArgv(conn)
	defer cleanup()
	if err != nil {
		return "", "", err
	}
	mode := str(inputs["logging"])
	logStdout := mode == "" || mode == "stdout" || mode == "stdoutAndStderr"
	logStderr := mode == "" || mode == "stderr" || mode == "stdoutAndStderr"
	a := dialing(ctx, log, conn, func() attempt {
		return runSSH(argv, command, strings.NewReader(str(inputs["stdin"])), logStdout, logStderr)
	})
	if a.neverConnected { // ssh's own complaints are no output of the command
		return "", "", a.err
	}
	logLines(log, a.logged)
	if a.err != nil {
		return "", "", fmt.Errorf("Process exited with status %d: running %q:\n%s", a.exitCode, command, a.combined)
	}
	return strings.TrimSuffix(a.stdout, "\n"), strings.TrimSuffix(a.stderr, "\n"), nil
}

// copyFile copies the file asset in inputs.source to inputs.remotePath, as the SSH user.
func copyFile(ctx context.Context, log logger, inputs map[string]any) error {
	source := asMap(inputs["source"])
	path := str(source["path"])
	if path == "" {
		return fmt.Errorf("the stand-in CopyToRemote copies file assets only")
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	conn := asMap(inputs["connection"])
	argv, cleanup, err := sshArgv(conn)
	defer cleanup()
	if err != nil {
		return err
	}
	// No mkdir: sftp.Create fails when the parent directory is missing.
	script := fmt.Sprintf(`t=%s; if [ -d "$t" ]; then t="$t"/%s; fi; cat > "$t"`,
		shellQuote(str(inputs["remotePath"])), shellQuote(filepath.Base(path)))
	a := dialing(ctx, log, conn, func() attempt {
		return runSSH(argv, script, bytes.NewReader(content), false, false)
	})
	if a.neverConnected {
		return a.err
	}
	if a.err != nil {
		return fmt.Errorf("failed to create remote file %s: %s", str(inputs["remotePath"]), strings.TrimSpace(a.stderr))
	}
	return nil
}

// copyNeeded: an update copies only when the asset's content or the destination changed
// (copyController.go: Update, needCopy).
func copyNeeded(olds, news map[string]any) bool {
	o, n := asMap(olds["source"]), asMap(news["source"])
	return str(o["hash"]) != str(n["hash"]) || str(o["path"]) != str(n["path"]) ||
		str(olds["remotePath"]) != str(news["remotePath"])
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// execute runs the step `command` of a resource of type typ; for CopyToRemote, command is
// "copy" when the copy is due and "" otherwise.
func execute(ctx context.Context, log logger, typ string, inputs map[string]any, command string) (string, string, error) {
	switch typ {
	case remoteCommand:
		if command == "" {
			return "", "", nil
		}
		return runRemote(ctx, log, inputs, command)
	case copyToRemote:
		if command == "" {
			return "", "", nil
		}
		return "", "", copyFile(ctx, log, inputs)
	}
	return run(ctx, inputs, command)
}

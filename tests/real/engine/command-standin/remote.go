// Stand-in remote.Command and remote.CopyToRemote, over the openssh client binary.
//
// Like local.Command in main.go, this is NOT pulumi-command: it approximates v1.x for the
// real-engine tests of k3s-rancher. remote.Command runs create/update/delete through the
// login shell of connection.user on connection.host:port, with connection.privateKey and,
// when connection.hostKey is set, strict host-key checking; stdin is passed through. As a
// stock sshd refuses SSH setenv, a command with `environment`, or an update whose
// addPreviousOutputInEnv is not false, fails here as it would there. CopyToRemote copies a
// FileAsset to remotePath as the SSH user (no sudo) and has no delete step. Not
// implemented: proxy (bastion), agent auth, archives, logging modes.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

func number(v any, fallback int) string {
	if f, ok := v.(float64); ok && f > 0 {
		return strconv.Itoa(int(f))
	}
	return strconv.Itoa(fallback)
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
	port := number(conn["port"], 22)
	host := str(conn["host"])
	argv := []string{"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=" + number(conn["perDialTimeout"], 15),
		"-o", "LogLevel=ERROR", "-p", port, "-l", user}
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

// runRemote runs command over SSH; previous (non-nil on update/delete) stands for the
// last outputs, which pulumi-command would send with setenv unless told not to.
func runRemote(ctx context.Context, inputs map[string]any, command string, previous map[string]any) (string, string, error) {
	if command == "" {
		return "", "", nil
	}
	if env, ok := inputs["environment"].(map[string]any); ok && len(env) > 0 {
		return "", "", fmt.Errorf("ssh: setenv failed (the stand-in, like a stock sshd, refuses environment)")
	}
	if add, ok := inputs["addPreviousOutputInEnv"].(bool); previous != nil && (!ok || add) {
		return "", "", fmt.Errorf("ssh: setenv failed (addPreviousOutputInEnv is not false)")
	}
	argv, cleanup, err := sshArgv(asMap(inputs["connection"]))
	defer cleanup()
	if err != nil {
		return "", "", err
	}
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], "--", command)...) //nolint:gosec // the point
	cmd.Stdin = strings.NewReader(str(inputs["stdin"]))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("%w: running remote command:\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	return strings.TrimSuffix(stdout.String(), "\n"), strings.TrimSuffix(stderr.String(), "\n"), nil
}

// copyFile copies the FileAsset in inputs.source to inputs.remotePath, as the SSH user.
func copyFile(ctx context.Context, inputs map[string]any) error {
	source := asMap(inputs["source"])
	path := str(source["path"])
	if path == "" {
		return fmt.Errorf("the stand-in CopyToRemote copies FileAssets only")
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	argv, cleanup, err := sshArgv(asMap(inputs["connection"]))
	defer cleanup()
	if err != nil {
		return err
	}
	target := shellQuote(str(inputs["remotePath"]))
	script := fmt.Sprintf(`mkdir -p "$(dirname %s)" && cat > %s`, target, target)
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], "--", script)...) //nolint:gosec // the point
	cmd.Stdin = bytes.NewReader(content)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: copying %s: %s", err, path, stderr.String())
	}
	return nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// execute runs the step `command` of a resource of type typ.
func execute(ctx context.Context, typ string, inputs map[string]any, command string, previous map[string]any) (string, string, error) {
	switch typ {
	case remoteCommand:
		return runRemote(ctx, inputs, command, previous)
	case copyToRemote:
		if command == "" { // delete: CopyToRemote leaves the file
			return "", "", nil
		}
		return "", "", copyFile(ctx, inputs)
	}
	return run(ctx, inputs, command, previous)
}

// k3s-rancher stand-in for the Pulumi Python language host (pulumi-language-python).
//
// Why this exists: the Go module proxy reachable from this project's machines does not
// serve github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3 (any version:
// 403 "This module version is not available"), so the real host cannot be built here.
// This is our own minimal implementation of the LanguageRuntime gRPC service, written for
// the project's tests: it launches the upstream pulumi-language-python-exec script (taken
// from the github.com/pulumi/pulumi/sdk/v3 module at build time and placed next to this
// binary) with the project's Python interpreter, exactly as the real host does for a plain
// `pulumi up/preview/destroy`. It does not implement dependency installation, plugin
// discovery from installed packages, typecheckers, toolchains (uv/poetry) or codegen:
// the test programs use a pre-built virtualenv and resource plugins found on PATH.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Version is set with -ldflags "-X main.Version=...".
var Version = "0.0.0-dev"

// Exit code with which pulumi-language-python-exec signals that it already showed the error.
const userActionableExitCode = 32

const execName = "pulumi-language-python-exec"

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	tracing       string
	virtualenv    string // from the -virtualenv flag (older engines pass runtime options as flags)
	executor      string // from the -use-executor flag
}

func main() {
	// Flags the engine may pass to a language plugin (logging/tracing), plus the real
	// host's runtime-option flags, accepted so that older invocations keep working.
	fs := flag.NewFlagSet("pulumi-language-python", flag.ContinueOnError)
	fs.Bool("logtostderr", false, "ignored")
	fs.Bool("logflow", false, "ignored")
	fs.Int("v", 0, "ignored")
	tracing := fs.String("tracing", "", "tracing endpoint, passed on to the program")
	fs.String("root", "", "ignored")
	virtualenv := fs.String("virtualenv", "", "virtualenv of the program")
	fs.String("typechecker", "", "not supported")
	fs.String("toolchain", "", "only pip (a plain virtualenv) is supported")
	executor := fs.String("use-executor", "", "path of pulumi-language-python-exec")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	h := &host{tracing: *tracing, virtualenv: *virtualenv, executor: *executor}
	if fs.NArg() > 0 {
		h.engineAddress = fs.Arg(0)
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: could not start: %v\n", err)
		os.Exit(1)
	}
	// The engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(1)
	}
}

func (h *host) Handshake(_ context.Context, req *pulumirpc.LanguageHandshakeRequest) (
	*pulumirpc.LanguageHandshakeResponse, error,
) {
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

// Plugins are found on PATH by the engine when a resource needs them, so nothing is
// announced up front (the real host reads pulumi-plugin.json of installed packages).
func (h *host) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest) (
	*pulumirpc.GetRequiredPluginsResponse, error,
) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(context.Context, *pulumirpc.GetRequiredPackagesRequest) (
	*pulumirpc.GetRequiredPackagesResponse, error,
) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// InstallDependencies only checks that the virtualenv exists: the tests provide it.
func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	_ grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	python, _, err := h.python(req.GetInfo())
	if err != nil {
		return err
	}
	if _, err := os.Stat(python); err != nil {
		return status.Errorf(codes.FailedPrecondition,
			"this stand-in language host installs nothing: create the virtualenv first (%v)", err)
	}
	return nil
}

func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// python returns the interpreter to use and the virtualenv directory ("" if none).
func (h *host) python(info *pulumirpc.ProgramInfo) (string, string, error) {
	venv := h.virtualenv
	toolchain := ""
	if opts := info.GetOptions(); opts != nil {
		if v, ok := opts.GetFields()["virtualenv"]; ok && v.GetStringValue() != "" {
			venv = v.GetStringValue()
		}
		if v, ok := opts.GetFields()["toolchain"]; ok {
			toolchain = v.GetStringValue()
		}
	}
	if toolchain != "" && toolchain != "pip" {
		return "", "", status.Errorf(codes.Unimplemented,
			"this stand-in language host supports only toolchain pip, not %q", toolchain)
	}
	if venv == "" {
		python, err := exec.LookPath("python3")
		if err != nil {
			return "", "", status.Errorf(codes.FailedPrecondition, "python3 not found on PATH: %v", err)
		}
		return python, "", nil
	}
	if !filepath.IsAbs(venv) {
		venv = filepath.Join(info.GetRootDirectory(), venv)
	}
	return filepath.Join(venv, "bin", "python"), venv, nil
}

func (h *host) executorPath() (string, error) {
	if h.executor != "" {
		return h.executor, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	path := filepath.Join(filepath.Dir(self), execName)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("missing executor %s next to the language host: %w", execName, err)
	}
	return path, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	python, venv, err := h.python(req.GetInfo())
	if err != nil {
		return nil, err
	}
	script, err := h.executorPath()
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}

	program := req.GetProgram() //nolint:staticcheck // fallback for engines that send no ProgramInfo
	if info := req.GetInfo(); info != nil && info.GetProgramDirectory() != "" {
		program = info.GetProgramDirectory()
		if ep := info.GetEntryPoint(); ep != "" && ep != "." {
			program = filepath.Join(program, ep)
		}
	}

	args := []string{
		script,
		"--monitor", req.GetMonitorAddress(),
		"--engine", h.engineAddress,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", req.GetPwd(),
		"--dry_run", strconv.FormatBool(req.GetDryRun()),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
		"--organization", req.GetOrganization(),
	}
	if root := req.GetInfo().GetRootDirectory(); root != "" {
		args = append(args, "--root_directory", root)
	}
	if h.tracing != "" {
		args = append(args, "--tracing", h.tracing)
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	configMap := req.GetConfig()
	if configMap == nil {
		configMap = map[string]string{}
	}
	config, err := json.Marshal(configMap)
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secrets, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}

	env := os.Environ()
	env = append(env,
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secrets),
		"PYTHONUNBUFFERED=1",
	)
	if venv != "" {
		env = append(env,
			"VIRTUAL_ENV="+venv,
			"PATH="+filepath.Join(venv, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
		env = dropEnv(env, "PYTHONHOME")
	}

	cmd := exec.CommandContext(ctx, python, args...) //nolint:gosec // the program is the user's
	cmd.Dir = req.GetPwd()
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code := exitErr.ExitCode()
			if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return &pulumirpc.RunResponse{
					Error: fmt.Sprintf("Program exited due to a signal: %v", ws.Signal()),
				}, nil
			}
			if code == userActionableExitCode {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{
				Error: fmt.Sprintf("Program exited with non-zero exit code: %d", code),
			}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Problem executing program (could not run %s): %v", python, err),
		}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

func dropEnv(env []string, name string) []string {
	out := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// k3s-rancher stand-in for the Pulumi Python language host (pulumi-language-python).
//
// Why this exists: the Go module proxy reachable from this project's machines does not
// serve github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3 (any version:
// 403 "This module version is not available"), so the real host cannot be built here.
// This is our own minimal implementation of the LanguageRuntime gRPC service, written for
// the project's tests: it launches the upstream pulumi-language-python-exec script (taken
// from the github.com/pulumi/pulumi/sdk/v3 module at build time and placed next to this
// binary) with the project's Python interpreter, exactly as the real host does for a plain
// `pulumi up/preview/destroy`, and runs a policy pack (`pulumi preview --policy-pack DIR`)
// with the pack's own virtualenv, as the real host's RunPlugin does (see RunPlugin below).
// It does not implement dependency installation, plugin discovery from installed packages,
// typecheckers, toolchains (uv/poetry) or codegen: the test programs use a pre-built
// virtualenv and resource plugins found on PATH.
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
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
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

// RunPlugin runs a plugin written in Python: for this project, the policy pack of `pulumi
// preview --policy-pack DIR`. How the CLI gets here (pulumi/pulumi pkg/v3 v3.274.1,
// resource/plugin/analyzer_plugin.go:134-143 and plugin.go:530-590): a policy pack path is a
// directory, so ExecPlugin reads DIR/PulumiPolicy.yaml, makes DIR absolute and calls RunPlugin
// of the language host its `runtime` names with Info{RootDirectory: DIR, ProgramDirectory:
// DIR, EntryPoint: ".", Options: runtime.options}, Pwd = the project's directory, Args = the
// engine's address (after --logtostderr/-v/--tracing when set), Env = the CLI's environment;
// then it reads the pack's gRPC port from the first stdout line the stream carries. The CLI
// does not install a local pack's dependencies on preview/up: the pack's virtualenv must exist.
//
// What the real Python host does (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go,
// func RunPlugin and parseOptions, in the releases that know the pulumi.run.plugin entry point,
// which the PyPI pulumi 3.272.0 of .venv ships):
//   - options: `virtualenv` (a string, relative to RootDirectory) and `toolchain` (pip, poetry
//     or uv); with toolchain pip and no virtualenv, the virtualenv is "venv" (plugins are not
//     run with the ambient Python); no toolchain and no virtualenv: python3 from PATH (the
//     stand-in resolves a missing toolchain as pip: it does not look for uv.lock/poetry.lock);
//   - a root holding __main__.py runs `<venv>/bin/python <ProgramDirectory> <Args...>`
//     (without __main__.py: `python -m pulumi.run.plugin <pyproject name> <Args...>`, which
//     this stand-in does not implement);
//   - the command's environment is the host's own, "activated" for the virtualenv
//     (sdk/v3 v3.274.1 python/toolchain/pip.go:202-216 and toolchain.go:180-211, the
//     package this stand-in calls: VIRTUAL_ENV set,
//     <venv>/bin first on PATH, PYTHONHOME removed), followed by the request's Env; its
//     directory is Pwd; stdout and stderr go back as RunPluginResponse messages
//     (rpcutil.MakeRunPluginStreams, not a terminal);
//   - a non-zero exit is sent as the Exitcode message; a python that cannot be started is the
//     error "problem executing plugin program (could not run language executor): ..."; a
//     normal exit ends the stream (the CLI reads that as exit code 0).
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest,
	server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	info := req.GetInfo()
	if info == nil {
		return status.Error(codes.InvalidArgument,
			"this stand-in language host runs plugins described by a ProgramInfo only")
	}
	opts := info.GetOptions().AsMap()
	virtualenv := ""
	if v, ok := opts["virtualenv"]; ok {
		s, isString := v.(string)
		if !isString {
			return errors.New("virtualenv option must be a string")
		}
		virtualenv = s
	}
	tc := toolchain.Auto
	if v, ok := opts["toolchain"]; ok {
		s, isString := v.(string)
		if !isString {
			return errors.New("toolchain option must be a string")
		}
		switch s {
		case "pip":
			tc = toolchain.Pip
		case "poetry", "uv":
			return status.Errorf(codes.Unimplemented,
				"this stand-in language host supports only toolchain pip, not %q", s)
		default:
			return fmt.Errorf("unsupported toolchain option: %s", s)
		}
	}
	if tc == toolchain.Pip && virtualenv == "" {
		virtualenv = "venv"
	}
	root := info.GetRootDirectory()
	if _, err := os.Stat(filepath.Join(root, "__main__.py")); err != nil {
		if !os.IsNotExist(err) {
			return fmt.Errorf("looking for __main__.py: %w", err)
		}
		return status.Errorf(codes.Unimplemented, "this stand-in language host runs a Python plugin "+
			"from its __main__.py only, and %s has none (the real host would try `python -m pulumi.run.plugin`)", root)
	}
	python, err := toolchain.ResolveToolchain(toolchain.PythonOptions{
		Root: root, ProgramDir: info.GetProgramDirectory(), Virtualenv: virtualenv, Toolchain: toolchain.Pip,
	})
	if err != nil {
		return err
	}
	args := append([]string{info.GetProgramDirectory()}, req.GetArgs()...)
	cmd, err := python.Command(server.Context(), args...)
	if err != nil {
		return err
	}

	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()
	cmd.Dir = req.GetPwd()
	cmd.Env = append(cmd.Env, req.GetEnv()...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok {
				return server.Send(&pulumirpc.RunPluginResponse{
					//nolint:gosec // an exit status fits in 8 bits
					Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(ws.ExitStatus())},
				})
			}
			return fmt.Errorf("program exited unexpectedly: %w", exitErr)
		}
		return fmt.Errorf("problem executing plugin program (could not run language executor): %w", err)
	}
	return closer.Close()
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

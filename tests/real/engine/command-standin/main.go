// k3s-rancher STAND-IN for pulumi-resource-command: local.Command here, remote.Command and
// remote.CopyToRemote in remote.go (which lists, with the pulumi-command source lines, each
// behaviour it imitates), engine messages in engine.go. OPT-IN
// (K3SR_ENGINE_COMMAND_STANDIN=1 for build.sh).
//
// Why this exists: the Go module proxy reachable from this project's machines serves no
// version of github.com/pulumi/pulumi-command/provider (nor of its dependency
// github.com/pulumi/pulumi-go-provider), so the real provider cannot be built here. This is
// our own small implementation of the resource-provider gRPC service, so that real-engine
// tests exercise the engine's create/diff/update/replace/delete cycle with our commands.
// local.Command approximates pulumi-command v1.x: inputs create/update/delete/dir/
// environment/interpreter/stdin/triggers/addPreviousOutputInEnv, outputs stdout/stderr
// (trailing newline trimmed); a change of triggers replaces, any other input change
// updates (runs update, else create); an update or delete sees the previous
// stdout/stderr as PULUMI_COMMAND_STDOUT/STDERR when they are not empty and
// addPreviousOutputInEnv is not false (local/commandOutputs.go). It does NOT implement
// assetPaths/archivePaths or logging for local commands, and its error texts differ.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Version is set with -ldflags "-X main.Version=...".
var Version = "0.0.0-dev"

const (
	localCommand = "command:local:Command"
	// The engine's marker for a value not known during preview.
	unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
)

var inputKeys = []string{
	"create", "update", "delete", "dir", "environment", "interpreter", "stdin", "triggers",
	"addPreviousOutputInEnv", "assetPaths", "archivePaths", "logging",
}

type provider struct {
	pulumirpc.UnimplementedResourceProviderServer
}

func main() {
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterResourceProviderServer(srv, &provider{})
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: could not start: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: %v\n", err)
		os.Exit(1)
	}
}

func (p *provider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

func (p *provider) Attach(context.Context, *pulumirpc.PluginAttach) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (p *provider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (p *provider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *provider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *provider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{SupportsPreview: true}, nil
}

func checkType(t string) error {
	if t != localCommand && t != remoteCommand && t != copyToRemote {
		return status.Errorf(codes.Unimplemented,
			"the k3s-rancher stand-in command provider implements %s, %s and %s, not %s",
			localCommand, remoteCommand, copyToRemote, t)
	}
	return nil
}

// stepCommand is what a create or update runs: the command text, or for CopyToRemote a
// marker that the copy is due.
func stepCommand(typ string, inputs map[string]any, update bool) string {
	if typ == copyToRemote {
		return "copy"
	}
	if update && str(inputs["update"]) != "" {
		return str(inputs["update"])
	}
	return str(inputs["create"])
}

func resourceType(urn string) string {
	parts := strings.Split(urn, "::")
	if len(parts) < 4 {
		return ""
	}
	typ := parts[len(parts)-2]
	if i := strings.LastIndex(typ, "$"); i >= 0 {
		typ = typ[i+1:]
	}
	return typ
}

func (p *provider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	typ := resourceType(req.GetUrn())
	if err := checkType(typ); err != nil {
		return nil, err
	}
	news := req.GetNews().AsMap()
	var failures []*pulumirpc.CheckFailure
	if interp, ok := news["interpreter"].([]any); ok && len(interp) == 0 {
		failures = append(failures, &pulumirpc.CheckFailure{Property: "interpreter", Reason: "must not be empty"})
	}
	// The defaults pulumi-command's Check fills in (remote/command.go, local/command.go:
	// SetDefault addPreviousOutputInEnv true; remote/connection.go: connection defaults).
	if typ != copyToRemote {
		if _, ok := news["addPreviousOutputInEnv"]; !ok {
			news["addPreviousOutputInEnv"] = true
		}
	}
	if conn := asMap(news["connection"]); conn != nil {
		news["connection"] = withConnectionDefaults(conn)
	}
	if source := asMap(news["source"]); typ == copyToRemote && source != nil && str(source["path"]) == "" {
		failures = append(failures, &pulumirpc.CheckFailure{Property: "source", Reason: "the stand-in copies file assets only"})
	}
	inputs, err := structpb.NewStruct(news)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: inputs, Failures: failures}, nil
}

func (p *provider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds := req.GetOldInputs().AsMap()
	if req.GetOldInputs() == nil {
		olds = req.GetOlds().AsMap()
	}
	news := req.GetNews().AsMap()
	ignored := map[string]bool{}
	for _, k := range req.GetIgnoreChanges() {
		ignored[k] = true
	}
	var diffs, replaces []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for _, k := range keysFor(resourceType(req.GetUrn())) {
		if ignored[k] {
			continue
		}
		o, oOK := olds[k]
		n, nOK := news[k]
		if oOK == nOK && reflect.DeepEqual(o, n) {
			continue
		}
		kind := pulumirpc.PropertyDiff_UPDATE
		switch {
		case !oOK:
			kind = pulumirpc.PropertyDiff_ADD
		case !nOK:
			kind = pulumirpc.PropertyDiff_DELETE
		}
		if k == "triggers" {
			replaces = append(replaces, k)
			kind += pulumirpc.PropertyDiff_ADD_REPLACE - pulumirpc.PropertyDiff_ADD
		}
		diffs = append(diffs, k)
		detailed[k] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	sort.Strings(diffs)
	changes := pulumirpc.DiffResponse_DIFF_NONE
	if len(diffs) > 0 {
		changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return &pulumirpc.DiffResponse{
		Changes: changes, Diffs: diffs, Replaces: replaces,
		DetailedDiff: detailed, HasDetailedDiff: true,
	}, nil
}

func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "cmd-" + hex.EncodeToString(b), nil
}

func (p *provider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	if err := checkType(resourceType(req.GetUrn())); err != nil {
		return nil, err
	}
	inputs := req.GetProperties().AsMap()
	id, err := newID()
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		return respond(id, inputs, unknown, unknown)
	}
	typ := resourceType(req.GetUrn())
	log := logger{ctx, req.GetUrn()}
	killPoint("before", req.GetUrn(), "create")
	stdout, stderr, err := execute(ctx, log, typ, inputs, stepCommand(typ, inputs, false))
	if err != nil {
		return nil, err
	}
	killPoint("after", req.GetUrn(), "create")
	return respond(id, inputs, stdout, stderr)
}

func respond(id string, inputs map[string]any, stdout, stderr string) (*pulumirpc.CreateResponse, error) {
	props, err := outputs(inputs, stdout, stderr)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func outputs(inputs map[string]any, stdout, stderr string) (*structpb.Struct, error) {
	out := map[string]any{}
	for k, v := range inputs {
		out[k] = v
	}
	out["stdout"] = stdout
	out["stderr"] = stderr
	return structpb.NewStruct(out)
}

func (p *provider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (p *provider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	if err := checkType(resourceType(req.GetUrn())); err != nil {
		return nil, err
	}
	news := req.GetNews().AsMap()
	if req.GetPreview() {
		props, err := outputs(news, unknown, unknown)
		return &pulumirpc.UpdateResponse{Properties: props}, err
	}
	typ := resourceType(req.GetUrn())
	olds := req.GetOlds().AsMap()
	// The state of an update is the new inputs with the previous outputs
	// (commandController.go: Update), which a run may send as PULUMI_COMMAND_STDOUT/STDERR.
	state := map[string]any{}
	for k, v := range news {
		state[k] = v
	}
	state["stdout"], state["stderr"] = str(olds["stdout"]), str(olds["stderr"])
	command := stepCommand(typ, news, true)
	if typ == copyToRemote && !copyNeeded(olds, news) {
		command = ""
	}
	stdout, stderr := str(olds["stdout"]), str(olds["stderr"])
	killPoint("before", req.GetUrn(), "update")
	if command != "" {
		var err error
		if stdout, stderr, err = execute(ctx, logger{ctx, req.GetUrn()}, typ, state, command); err != nil {
			return nil, err
		}
	}
	killPoint("after", req.GetUrn(), "update")
	props, err := outputs(news, stdout, stderr)
	return &pulumirpc.UpdateResponse{Properties: props}, err
}

func (p *provider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	state := req.GetProperties().AsMap()
	killPoint("before", req.GetUrn(), "delete")
	if command := str(state["delete"]); command != "" && resourceType(req.GetUrn()) != copyToRemote {
		if _, _, err := execute(ctx, logger{ctx, req.GetUrn()}, resourceType(req.GetUrn()), state, command); err != nil {
			return nil, err
		}
	}
	killPoint("after", req.GetUrn(), "delete")
	return &emptypb.Empty{}, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// run executes command with the resource's interpreter, dir, environment and stdin. On an
// update or delete, inputs["stdout"]/["stderr"] hold the outputs of the last run, exposed
// as PULUMI_COMMAND_STDOUT/STDERR unless addPreviousOutputInEnv is false.
func run(ctx context.Context, inputs map[string]any, command string) (string, string, error) {
	if command == "" {
		return "", "", nil
	}
	interp := []string{"/bin/sh", "-c"}
	if list, ok := inputs["interpreter"].([]any); ok && len(list) > 0 {
		interp = interp[:0]
		for _, a := range list {
			interp = append(interp, str(a))
		}
	}
	args := append(append([]string{}, interp[1:]...), command)
	cmd := exec.CommandContext(ctx, interp[0], args...) //nolint:gosec // running commands is the point
	cmd.Dir = str(inputs["dir"])
	cmd.Env = os.Environ()
	if env, ok := inputs["environment"].(map[string]any); ok {
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			cmd.Env = append(cmd.Env, k+"="+str(env[k]))
		}
	}
	if add, ok := inputs["addPreviousOutputInEnv"].(bool); !ok || add {
		for _, name := range []string{"stdout", "stderr"} {
			if previous := str(inputs[name]); previous != "" {
				cmd.Env = append(cmd.Env, "PULUMI_COMMAND_"+strings.ToUpper(name)+"="+previous)
			}
		}
	}
	if stdin := str(inputs["stdin"]); stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("%w: running %q:\nstdout: %s\nstderr: %s",
			err, command, stdout.String(), stderr.String())
	}
	return strings.TrimSuffix(stdout.String(), "\n"), strings.TrimSuffix(stderr.String(), "\n"), nil
}

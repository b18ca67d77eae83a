// Messages from the STAND-IN command provider to the engine (what `pulumi up` prints).
//
// pulumi-command logs through pulumi-go-provider's logger, which calls the engine's Log RPC
// with the resource's URN: warnings and errors are diagnostics (shown in the summary), the
// command's output lines and "Dial N/M failed: retrying" are ephemeral status messages
// (Info column of the progress display, and the event log). Imitated here with the Engine
// gRPC client; the engine passes its address as the plugin's last argument.
package main

import (
	"context"
	"os"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

var (
	engineOnce   sync.Once
	engineClient pulumirpc.EngineClient
)

// engine dials the engine once; nil when no address was given (the stand-in run by hand).
func engine() pulumirpc.EngineClient {
	engineOnce.Do(func() {
		if len(os.Args) < 2 || strings.HasPrefix(os.Args[len(os.Args)-1], "-") {
			return
		}
		conn, err := grpc.NewClient(os.Args[len(os.Args)-1],
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			engineClient = pulumirpc.NewEngineClient(conn)
		}
	})
	return engineClient
}

// logger sends messages about one resource.
type logger struct {
	ctx context.Context
	urn string
}

func (l logger) send(sev pulumirpc.LogSeverity, msg string, ephemeral bool) {
	client := engine()
	if client == nil {
		return
	}
	_, _ = client.Log(l.ctx, &pulumirpc.LogRequest{
		Severity: sev, Message: strings.ToValidUTF8(msg, "\uFFFD"), Urn: l.urn, Ephemeral: ephemeral,
	})
}

func (l logger) warning(msg string) { l.send(pulumirpc.LogSeverity_WARNING, msg, false) }
func (l logger) error(msg string)   { l.send(pulumirpc.LogSeverity_ERROR, msg, false) }
func (l logger) status(msg string)  { l.send(pulumirpc.LogSeverity_INFO, msg, true) }

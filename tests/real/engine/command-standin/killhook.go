package main

// TEST HOOK, not pulumi-command behaviour: kill points for the crash-safety tests (issue 23).
//
//   K3SR_STANDIN_KILL=<when>:<resource name>   when = before | after
//   K3SR_STANDIN_KILLED=<file>                 where the hook says it fired
//
// The engine passes its environment to the plugins it starts, so a test sets these on one
// `pulumi up`. The first create, update or delete of the named resource (its URN's last
// part) in this provider process SIGKILLs the engine CLI (this process's parent) either
// before the step's command runs (`before`: the previous steps are recorded, this one has
// not started) or after it ran on the host and before the engine hears of it (`after`: the
// host has changed, the state has not: the worst moment for a kill at a step boundary). The
// provider itself then refuses to answer, as it would in a killed process group; the test
// kills the orphans (EngineProject.kill_leftovers), as a CI job's teardown does.

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

var killOnce sync.Once

// killPoint fires the hook if `when` and the resource of urn are the ones asked for; op is
// "create", "update" or "delete" (written to the marker file).
func killPoint(when, urn, op string) {
	spec := os.Getenv("K3SR_STANDIN_KILL")
	if spec == "" {
		return
	}
	wantWhen, name, ok := strings.Cut(spec, ":")
	if !ok || wantWhen != when || urn[strings.LastIndex(urn, "::")+2:] != name {
		return
	}
	killOnce.Do(func() {
		if marker := os.Getenv("K3SR_STANDIN_KILLED"); marker != "" {
			_ = os.WriteFile(marker, []byte(fmt.Sprintf("%s %s %s\n", when, name, op)), 0o644)
		}
		_ = syscall.Kill(os.Getppid(), syscall.SIGKILL)
		// Never answer the dead engine: wait to be killed with the other orphans.
		for {
			time.Sleep(time.Hour)
		}
	})
}

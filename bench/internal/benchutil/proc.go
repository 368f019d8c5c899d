package benchutil

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// KillProcesses sends SIGKILL to every process but this one whose
// arguments (from /proc/PID/cmdline) match accepts, and describes each as
// "process PID (ARGS…)". It is a driver's last resort for what a run left
// running; it does not wait for the processes to go.
func KillProcesses(match func(args []string) bool) (found []string) {
	procs, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(cmd, "\x00")), "\x00")
		if !match(args) {
			continue
		}
		found = append(found, fmt.Sprintf("process %d (%s)", pid, strings.Join(args, " ")))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return found
}

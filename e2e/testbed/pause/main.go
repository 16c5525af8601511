// Command pause is the pod sandbox's init process for the e2e testbed: the image containerd's
// `sandbox_image` names. It holds the pod's namespaces open, reaps orphaned children (it is PID 1 when
// a pod shares its process namespace) and exits on SIGINT/SIGTERM, like Kubernetes' own pause.c.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

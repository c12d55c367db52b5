// Command pause is the pod sandbox image of make cluster's node: it holds the
// pod's namespaces open, reaps any children it inherits as PID 1, and exits
// on SIGTERM or SIGINT. (The cluster has no registry to pull
// registry.k8s.io/pause from; this is the same job, built from this repo.)
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}

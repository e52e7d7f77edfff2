// The sandbox ("pause") process of the e2e node's pods: it holds the pod's namespaces and
// waits until it is told to stop. Built static by scripts/node-tools, so its image needs no
// libraries.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

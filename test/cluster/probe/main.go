// Command probe is the cluster test's network probe: run in a pod, it sends
// one GET and prints what happened, for the NetworkPolicy scenario.
//
//	probe URL   prints "reached <status>" and exits 0 when any HTTP reply came
//	            back, "unreachable <error>" and exits 3 when none did within 5 s
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe URL")
		os.Exit(2)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Println("unreachable", err)
		os.Exit(3)
	}
	_ = resp.Body.Close()
	fmt.Println("reached", resp.StatusCode)
}

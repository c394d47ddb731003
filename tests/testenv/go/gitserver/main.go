// Command gitserver serves the Git repositories under a directory over smart HTTP on a free
// loopback port, with fluxcd/pkg's gittestserver (the server Flux's own controller tests use).
// Once it listens it writes its URL to -addr-file; it runs until killed.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fluxcd/pkg/gittestserver"
)

func main() {
	root := flag.String("root", "", "the directory whose repositories are served (required)")
	addrFile := flag.String("addr-file", "", "where to write the server's URL once it listens (required)")
	flag.Parse()
	if *root == "" || *addrFile == "" {
		fmt.Fprintln(os.Stderr, "usage: gitserver -root DIR -addr-file FILE")
		os.Exit(2)
	}
	srv := gittestserver.NewGitServer(*root)
	if err := srv.StartHTTP(); err != nil {
		fmt.Fprintln(os.Stderr, "gitserver:", err)
		os.Exit(1)
	}
	url := srv.HTTPAddress()
	// Written whole, then renamed: a reader never sees half a URL.
	partial := *addrFile + ".partial"
	if err := os.WriteFile(partial, []byte(url+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gitserver:", err)
		os.Exit(1)
	}
	if err := os.Rename(partial, *addrFile); err != nil {
		fmt.Fprintln(os.Stderr, "gitserver:", err)
		os.Exit(1)
	}
	fmt.Printf("gitserver: serving %s at %s\n", srv.Root(), url)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	srv.StopHTTP()
}

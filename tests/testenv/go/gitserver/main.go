// Command gitserver serves the Git repositories under a directory over smart HTTP on a free
// loopback port, with fluxcd/pkg's gittestserver (the server Flux's own controller tests use).
// With -files instead of -root it serves a directory's files as they are (net/http's file
// server), as a Helm chart repository is served: index.yaml and the chart archives; with
// -basic-auth-file (one line, USER:PASSWORD) only to a client that sends those credentials.
// Once it listens it writes its URL to -addr-file; it runs until killed.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fluxcd/pkg/gittestserver"
)

func main() {
	root := flag.String("root", "", "the directory whose repositories are served (required)")
	files := flag.String("files", "", "serve this directory's files over plain HTTP instead")
	addrFile := flag.String("addr-file", "", "where to write the server's URL once it listens (required)")
	authFile := flag.String("basic-auth-file", "", "with -files: answer 401 unless the request has these credentials (USER:PASSWORD)")
	flag.Parse()
	if (*root == "") == (*files == "") || *addrFile == "" {
		fmt.Fprintln(os.Stderr, "usage: gitserver -root DIR -addr-file FILE | -files DIR -addr-file FILE")
		os.Exit(2)
	}
	if *files != "" {
		serveFiles(*files, *addrFile, *authFile)
		return
	}
	srv := gittestserver.NewGitServer(*root)
	if err := srv.StartHTTP(); err != nil {
		fmt.Fprintln(os.Stderr, "gitserver:", err)
		os.Exit(1)
	}
	url := srv.HTTPAddress()
	writeURL(*addrFile, url)
	fmt.Printf("gitserver: serving %s at %s\n", srv.Root(), url)
	waitForSignal()
	srv.StopHTTP()
}

// serveFiles serves dir over HTTP on a free loopback port until killed.
func serveFiles(dir, addrFile, authFile string) {
	user, password := "", ""
	if authFile != "" {
		text, err := os.ReadFile(authFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gitserver:", err)
			os.Exit(1)
		}
		var ok bool
		user, password, ok = strings.Cut(strings.TrimSpace(string(text)), ":")
		if !ok {
			fmt.Fprintln(os.Stderr, "gitserver: -basic-auth-file must hold USER:PASSWORD")
			os.Exit(2)
		}
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gitserver:", err)
		os.Exit(1)
	}
	url := "http://" + listener.Addr().String()
	go func() {
		handler := http.FileServer(http.Dir(dir))
		logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if authFile != "" {
				u, p, ok := r.BasicAuth()
				if !ok || u != user || p != password {
					fmt.Printf("gitserver: %s %s: 401\n", r.Method, r.URL.Path)
					w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
					http.Error(w, "credentials needed", http.StatusUnauthorized)
					return
				}
			}
			fmt.Printf("gitserver: %s %s\n", r.Method, r.URL.Path)
			handler.ServeHTTP(w, r)
		})
		if err := http.Serve(listener, logged); err != nil {
			fmt.Fprintln(os.Stderr, "gitserver:", err)
			os.Exit(1)
		}
	}()
	writeURL(addrFile, url)
	fmt.Printf("gitserver: serving the files of %s at %s\n", dir, url)
	waitForSignal()
}

// writeURL writes url to file whole, then renames it: a reader never sees half a URL.
func writeURL(file, url string) {
	partial := file + ".partial"
	if err := os.WriteFile(partial, []byte(url+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gitserver:", err)
		os.Exit(1)
	}
	if err := os.Rename(partial, file); err != nil {
		fmt.Fprintln(os.Stderr, "gitserver:", err)
		os.Exit(1)
	}
}

func waitForSignal() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}

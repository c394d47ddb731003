//go:build tools

// Package tools pins k8s.io/kubernetes so that go mod tidy keeps it: without an import of a
// non-main package of it, tidy drops the requirement and a build silently resolves the newest
// kubernetes against the older staging replaces.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"

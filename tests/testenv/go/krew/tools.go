//go:build tools

// Package tools pins sigs.k8s.io/krew and the modules its commands need, so that go mod tidy
// keeps them (the tools build tag keeps this file out of every build).
package tools

import (
	_ "sigs.k8s.io/krew/cmd/krew"
	_ "sigs.k8s.io/krew/cmd/validate-krew-manifest"
)

//go:build tools

// Package tools pins the sops CLI and age-keygen so that go mod tidy keeps them (the tools build
// tag keeps this file out of every build; a main package may be named here, as it is never
// compiled).
package tools

import (
	_ "filippo.io/age/cmd/age-keygen"
	_ "github.com/getsops/sops/v3/cmd/sops"
)

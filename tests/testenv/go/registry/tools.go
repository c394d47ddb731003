//go:build tools

// Package tools pins the CNCF distribution registry so that go mod tidy keeps it (the tools build
// tag keeps this file out of every build; a main package may be named here, as it is never
// compiled).
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"

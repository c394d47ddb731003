//go:build tools

// Package tools pins helm.sh/helm/v4 so that go mod tidy keeps it (the tools build tag keeps this
// file out of every build; a main package may be named here, as it is never compiled).
package tools

import _ "helm.sh/helm/v4/cmd/helm"

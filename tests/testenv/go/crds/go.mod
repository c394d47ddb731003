// Pins the Flux and Argo CD releases whose CRD definitions the tests install. Nothing is built:
// `go mod download -json MODULE` gives the module's directory, and the CRD files are read from it.
module kubectl-gitops.dev/testenv/crds

go 1.26.0

require (
	github.com/argoproj/argo-cd/v3 v3.2.0
	github.com/fluxcd/kustomize-controller v1.9.0
	github.com/fluxcd/source-controller v1.7.0
)

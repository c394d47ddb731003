// Pins the Argo CD release whose CRD definitions the tests install (Flux's come from the
// controller modules in ../source-controller and ../kustomize-controller, which the tests run).
// Nothing is built: `go mod download -json MODULE` gives the module's directory, and the CRD
// files are read from it.
module kubectl-gitops.dev/testenv/crds

go 1.26.0

require github.com/argoproj/argo-cd/v3 v3.2.0

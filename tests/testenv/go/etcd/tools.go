//go:build tools

// Package tools pins go.etcd.io/etcd/server/v3 (its module root is the etcd main package).
package tools

import _ "go.etcd.io/etcd/server/v3/etcdmain"

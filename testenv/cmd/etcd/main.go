// Command etcd is the etcd server (go.etcd.io/etcd/server/v3/etcdmain) at
// the version go.mod pins for testenv/etcdtest, built as a program of the
// test environment: the HA shell test (testenv/scripts/test-ha.sh), the
// redirect benchmark and the compose profile `ha` (its FROM scratch etcd
// image) run it as a separate process, with etcd's own flags. The
// production binary never links it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

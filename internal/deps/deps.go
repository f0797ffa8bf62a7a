// Package deps pins required modules in go.mod until the packages that use them land.
package deps

import (
	_ "github.com/Mellanox/rdmamap"
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/panjf2000/gnet/v2"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "github.com/tikv/client-go/v2/testutils"
	_ "github.com/tikv/client-go/v2/txnkv"
	_ "github.com/vmihailenco/msgpack/v5"
)

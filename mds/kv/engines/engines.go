// Package engines links every kv engine into a program. Package kv cannot
// import its engines (they import kv for its interfaces), so each engine
// registers its URL scheme with kv.RegisterEngine from init, and a program
// that calls kv.Open imports this package once, for its side effect:
//
//	import _ "github.com/stratafs/strata/mds/kv/engines"
//
// It holds no code of its own.
package engines

import (
	// The embedded engine serves "embedded:DIR" URLs.
	_ "github.com/stratafs/strata/mds/kv/embedded"
	// The tikv engine serves "tikv://PD[,PD...]" URLs.
	_ "github.com/stratafs/strata/mds/kv/tikv"
)

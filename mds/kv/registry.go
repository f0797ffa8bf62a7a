package kv

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Engines register themselves here rather than being imported by this
// package, because each engine imports kv for the Engine interface: a
// direct import would be a cycle. A program that opens a store imports
// github.com/stratafs/strata/mds/kv/engines once (blank) to link both
// engines in; tests may import a single engine package instead.
var (
	enginesMu sync.RWMutex
	engines   = map[string]func(ctx context.Context, rest string, opts Options) (Engine, error){}
)

// RegisterEngine makes an engine available to Open under scheme: a URL
// "scheme:rest" is opened by calling open with rest (for "tikv://a,b" that
// is "//a,b"). Engines call it from init; registering a scheme twice
// panics, as two engines claiming one name is a build mistake.
func RegisterEngine(scheme string, open func(ctx context.Context, rest string, opts Options) (Engine, error)) {
	enginesMu.Lock()
	defer enginesMu.Unlock()
	if _, dup := engines[scheme]; dup {
		panic("kv: engine " + scheme + " registered twice")
	}
	engines[scheme] = open
}

// Schemes lists the registered engine schemes in sorted order.
func Schemes() []string {
	enginesMu.RLock()
	defer enginesMu.RUnlock()
	s := make([]string, 0, len(engines))
	for name := range engines {
		s = append(s, name)
	}
	sort.Strings(s)
	return s
}

// openEngine finds the engine a URL names and opens it.
func openEngine(ctx context.Context, url string, opts Options) (Engine, error) {
	scheme, rest, ok := strings.Cut(url, ":")
	if !ok || scheme == "" || rest == "" {
		return nil, fmt.Errorf("%w: %q", ErrBadURL, url)
	}
	enginesMu.RLock()
	open := engines[scheme]
	enginesMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("%w: %q (no engine %q registered; registered: %v; import mds/kv/engines)",
			ErrBadURL, url, scheme, Schemes())
	}
	return open(ctx, rest, opts)
}

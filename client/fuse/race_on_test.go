//go:build race

package fuse

// raceEnabled says the tests run under the race detector, which makes
// everything several times slower: the largest trees shrink under it.
const raceEnabled = true

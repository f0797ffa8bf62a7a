package fuse

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

// Supplementary groups are read from /proc/PID/status, whose "Groups:" line
// lists them, and cached briefly per process: a shell running a loop of
// commands would otherwise read /proc for every request.
const (
	groupsTTL     = 2 * time.Second
	groupsMaxPids = 4096
)

// groupCache maps a pid to its supplementary groups.
type groupCache struct {
	mu      sync.Mutex
	entries map[uint32]groupEntry
}

type groupEntry struct {
	uid     uint32
	groups  []uint32
	expires time.Time
}

// of returns the supplementary groups of process pid running as uid. Root
// needs none (the MDS lets it pass), and a process that is gone has none.
func (g *groupCache) of(pid, uid uint32) []uint32 {
	if uid == 0 || pid == 0 {
		return nil
	}
	now := time.Now()
	g.mu.Lock()
	if e, ok := g.entries[pid]; ok && e.uid == uid && now.Before(e.expires) {
		g.mu.Unlock()
		return e.groups
	}
	g.mu.Unlock()
	groups := readGroups(pid)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.entries == nil || len(g.entries) >= groupsMaxPids {
		g.entries = map[uint32]groupEntry{}
	}
	g.entries[pid] = groupEntry{uid: uid, groups: groups, expires: now.Add(groupsTTL)}
	return groups
}

// readGroups parses the Groups: line of /proc/PID/status.
func readGroups(pid uint32) []uint32 {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		rest, ok := bytes.CutPrefix(line, []byte("Groups:"))
		if !ok {
			continue
		}
		var out []uint32
		for _, f := range bytes.Fields(rest) {
			if v, err := strconv.ParseUint(string(f), 10, 32); err == nil {
				out = append(out, uint32(v))
			}
		}
		return out
	}
	return nil
}

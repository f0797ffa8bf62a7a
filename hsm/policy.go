package hsm

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/stratafs/strata/client"
	"github.com/stratafs/strata/proto"
)

// Policy is what HSM policies do on their own: archive files older or
// larger than a bound, and release archived files, least recently used
// first, from OSTs fuller than a watermark until they are below a lower
// one. Candidates come from the MDSes' inode records (Client.HsmScan),
// never from a walk of the namespace.
type Policy struct {
	// ArchiveOlderThan archives files not modified for this long (0: no
	// age rule).
	ArchiveOlderThan time.Duration `mapstructure:"archive-older-than"`
	// ArchiveLargerThan archives files larger than this (0: no size
	// rule). With both rules a file matching either is archived.
	ArchiveLargerThan int64 `mapstructure:"archive-larger-than"`
	// ArchiveID is the archive new copies go to (0: 1).
	ArchiveID uint32 `mapstructure:"archive-id"`
	// ReleaseAbove starts releasing from an OST more used than this
	// fraction (0: never); ReleaseTo is where it stops (0: ReleaseAbove
	// less a tenth).
	ReleaseAbove float64 `mapstructure:"release-above"`
	ReleaseTo    float64 `mapstructure:"release-to"`
}

// Decision is one thing a policy does.
type Decision struct {
	Action string `json:"action"` // "archive" or "release"
	Ino    uint64 `json:"ino"`
	Size   uint64 `json:"size"`
	// Reason says which rule chose the file.
	Reason string `json:"reason"`
}

// String prints a decision as `strata hsm policy` lists it.
func (d Decision) String() string {
	return fmt.Sprintf("%s [0x%x] %d bytes: %s", d.Action, d.Ino, d.Size, d.Reason)
}

// scanAll reads every regular file of every MDT.
func scanAll(ctx context.Context, c *client.Client) ([]proto.HsmFile, error) {
	var files []proto.HsmFile
	mdts := c.MDTIndexes()
	slices.Sort(mdts)
	for _, m := range mdts {
		after := uint64(0)
		for {
			page, err := c.HsmScan(ctx, m, after, 0)
			if err != nil {
				return nil, err
			}
			files = append(files, page.Files...)
			after = page.Next
			if page.Done {
				break
			}
		}
	}
	return files, nil
}

// Plan returns what p would do now, in order: archives by inode, then
// releases by OST and age.
func (p Policy) Plan(ctx context.Context, c *client.Client, now time.Time) ([]Decision, error) {
	files, err := scanAll(ctx, c)
	if err != nil {
		return nil, err
	}
	var out []Decision
	if p.ArchiveOlderThan > 0 || p.ArchiveLargerThan > 0 {
		for _, f := range files {
			flags := f.Flags
			clean := flags&proto.HsmArchived != 0 && flags&proto.HsmDirty == 0
			if clean || f.Busy || flags&(proto.HsmNoArchive|proto.HsmReleased) != 0 {
				continue
			}
			age := now.Sub(time.Unix(0, f.Mtime))
			switch {
			case p.ArchiveLargerThan > 0 && f.Size > uint64(p.ArchiveLargerThan):
				out = append(out, Decision{Action: "archive", Ino: f.Ino, Size: f.Size,
					Reason: fmt.Sprintf("larger than %d bytes", p.ArchiveLargerThan)})
			case p.ArchiveOlderThan > 0 && age > p.ArchiveOlderThan:
				out = append(out, Decision{Action: "archive", Ino: f.Ino, Size: f.Size,
					Reason: fmt.Sprintf("not modified for %s", age.Round(time.Second))})
			}
		}
	}
	if p.ReleaseAbove > 0 {
		rel, err := p.planReleases(ctx, c, files)
		if err != nil {
			return nil, err
		}
		out = append(out, rel...)
	}
	return out, nil
}

// planReleases picks, for every OST above the watermark, the least
// recently used archived clean files with objects on it until the space
// they hold brings it down to ReleaseTo.
func (p Policy) planReleases(ctx context.Context, c *client.Client, files []proto.HsmFile) ([]Decision, error) {
	to := p.ReleaseTo
	if to <= 0 || to >= p.ReleaseAbove {
		to = p.ReleaseAbove - 0.1
	}
	targets, err := c.Targets(ctx)
	if err != nil {
		return nil, err
	}
	var candidates []proto.HsmFile
	for _, f := range files {
		flags := f.Flags
		if flags&proto.HsmArchived != 0 && flags&(proto.HsmDirty|proto.HsmReleased|proto.HsmNoRelease|proto.HsmLost) == 0 &&
			!f.Busy && len(f.OSTs) > 0 {
			candidates = append(candidates, f)
		}
	}
	lastUse := func(f proto.HsmFile) int64 { return max(f.Atime, f.Mtime) }
	slices.SortStableFunc(candidates, func(a, b proto.HsmFile) int {
		switch {
		case lastUse(a) != lastUse(b):
			return cmpInt(lastUse(a), lastUse(b))
		default:
			return cmpInt(int64(a.Ino), int64(b.Ino))
		}
	})
	osts := targets.OSTs
	slices.SortFunc(osts, func(a, b proto.OST) int { return cmpInt(int64(a.Index), int64(b.Index)) })
	chosen := map[uint64]bool{}
	var out []Decision
	for _, o := range osts {
		if o.Total == 0 || float64(o.Used)/float64(o.Total) <= p.ReleaseAbove {
			continue
		}
		used := float64(o.Used)
		goal := to * float64(o.Total)
		for _, f := range candidates {
			if used <= goal {
				break
			}
			if !slices.Contains(f.OSTs, o.Index) {
				continue
			}
			// The file's bytes spread evenly over its objects.
			used -= float64(f.Size) / float64(len(f.OSTs))
			if chosen[f.Ino] {
				continue
			}
			chosen[f.Ino] = true
			out = append(out, Decision{Action: "release", Ino: f.Ino, Size: f.Size,
				Reason: fmt.Sprintf("OST%04x %.0f%% used, least recently used", o.Index, 100*float64(o.Used)/float64(o.Total))})
		}
	}
	return out, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Apply carries decisions out as root: archives are queued (not waited
// for), releases done. It returns the error of each decision (nil when it
// went through), in order.
func (p Policy) Apply(ctx context.Context, c *client.Client, ds []Decision) []error {
	errs := make([]error, len(ds))
	for i, d := range ds {
		req := proto.HsmRequestReq{Ino: d.Ino, Action: proto.HsmArchive, ArchiveID: p.ArchiveID}
		if d.Action == "release" {
			req = proto.HsmRequestReq{Ino: d.Ino, Action: proto.HsmRelease}
		}
		_, errs[i] = c.HsmRequest(ctx, proto.Cred{}, req)
	}
	return errs
}

// RunEvery plans and applies the policy every interval until ctx ends,
// logging what it does (the copytool's --policy-every).
func (p Policy) RunEvery(ctx context.Context, c *client.Client, every time.Duration, log *slog.Logger) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ds, err := p.Plan(ctx, c, time.Now())
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("hsm: policy scan", "err", err)
			}
			continue
		}
		for i, err := range p.Apply(ctx, c, ds) {
			if err != nil {
				log.Warn("hsm: policy", "decision", ds[i].String(), "err", err)
				continue
			}
			log.Info("hsm: policy", "decision", ds[i].String())
		}
	}
}

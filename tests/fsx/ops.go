package fsx

import (
	"fmt"
	"math/rand/v2"

	"golang.org/x/sys/unix"
)

// Kind is one kind of operation the engine performs on the file.
type Kind int

// The operations, in the order of the weights table.
const (
	Read       Kind = iota // pread(2)
	Write                  // pwrite(2)
	MapRead                // read through a MAP_SHARED mapping
	MapWrite               // store through a MAP_SHARED mapping, msync(MS_SYNC)
	Truncate               // ftruncate(2), up or down
	Fallocate              // fallocate(2) in one of fallocModes
	CopyFrom               // copy_file_range(2) from the source file
	CopyWithin             // copy_file_range(2) between disjoint ranges of the file
	Reopen                 // close(2) and open(2) again
	Fsync                  // fsync(2) or fdatasync(2)
	Recreate               // close(2), unlink(2), and create a new file
	numKinds
)

var kindNames = [numKinds]string{"read", "write", "mapread", "mapwrite", "truncate", "fallocate", "copyfrom", "copywithin", "reopen", "fsync", "recreate"}

// String names the kind as reports and flags spell it.
func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// weights are the relative frequencies of the kinds, roughly fsx's. fsx
// keeps one file for the whole run; Recreate starts a new one now and then,
// because a file's first moments (data written but never yet synced or
// closed) are a state of their own.
var weights = [numKinds]int{Read: 14, Write: 18, MapRead: 8, MapWrite: 8, Truncate: 7, Fallocate: 12, CopyFrom: 6, CopyWithin: 6, Reopen: 4, Fsync: 4, Recreate: 2}

// fallocModes are the fallocate(2) modes exercised, each reported absent on
// its own when the mount answers EOPNOTSUPP and fallocate may be missing.
var fallocModes = []uint32{
	0,
	unix.FALLOC_FL_KEEP_SIZE,
	unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
	unix.FALLOC_FL_ZERO_RANGE,
	unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE,
}

// fallocName spells a fallocate mode as the flags' names.
func fallocName(mode uint32) string {
	switch mode {
	case 0:
		return "0"
	case unix.FALLOC_FL_KEEP_SIZE:
		return "KEEP_SIZE"
	case unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE:
		return "PUNCH_HOLE|KEEP_SIZE"
	case unix.FALLOC_FL_ZERO_RANGE:
		return "ZERO_RANGE"
	case unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE:
		return "ZERO_RANGE|KEEP_SIZE"
	}
	return fmt.Sprintf("%#x", mode)
}

// Op is one step: what was asked and, once done, what came of it.
type Op struct {
	Step   int
	Kind   Kind
	Off    int64  // file offset (destination of a copy)
	Len    int64  // bytes asked for (new size for Truncate)
	SrcOff int64  // source offset of a copy
	Mode   uint32 // fallocate mode; 1 for the fdatasync variant of Fsync; the file's number for Recreate
	Size   int64  // model size before the step
	Result string // what happened, for the report
}

// String prints the step as fsx does: offsets and lengths in hex.
func (o Op) String() string {
	s := fmt.Sprintf("%7d %-10s", o.Step, o.Kind)
	switch o.Kind {
	case Read, Write, MapRead, MapWrite:
		s += fmt.Sprintf(" %#x +%#x (to %#x)", o.Off, o.Len, o.Off+o.Len)
	case Truncate:
		s += fmt.Sprintf(" %#x -> %#x", o.Size, o.Len)
	case Fallocate:
		s += fmt.Sprintf(" %s %#x +%#x (to %#x)", fallocName(o.Mode), o.Off, o.Len, o.Off+o.Len)
	case CopyFrom, CopyWithin:
		s += fmt.Sprintf(" %#x +%#x -> %#x", o.SrcOff, o.Len, o.Off)
	case Fsync:
		if o.Mode == 1 {
			s += " fdatasync"
		}
	case Recreate:
		s += fmt.Sprintf(" -> file #%d", o.Mode)
	}
	s += fmt.Sprintf("  [size %#x]", o.Size)
	if o.Result != "" {
		s += " " + o.Result
	}
	return s
}

// generator draws steps from a seeded source; the same seed, limits and
// set of absent features give the same sequence.
type generator struct {
	rng    *rand.Rand
	cfg    *Config
	total  int
	absent func(Kind, uint32) bool
}

func newGenerator(cfg *Config, absent func(Kind, uint32) bool) *generator {
	g := &generator{rng: rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x5eed5eed5eed5eed)), cfg: cfg, absent: absent}
	for k := Kind(0); k < numKinds; k++ {
		g.total += weights[k]
	}
	return g
}

// next draws the step after a file of size bytes.
func (g *generator) next(step int, size int64) Op {
	for {
		op := Op{Step: step, Kind: g.kind(), Size: size}
		if g.fill(&op, size) {
			return op
		}
	}
}

func (g *generator) kind() Kind {
	n := g.rng.IntN(g.total)
	for k := Kind(0); k < numKinds; k++ {
		if n < weights[k] {
			return k
		}
		n -= weights[k]
	}
	return Read
}

// offset draws a file offset below limit; a third of them fall within a
// page of a stripe boundary so that I/O crosses objects.
func (g *generator) offset(limit int64) int64 {
	if limit <= 0 {
		return 0
	}
	if ss := g.cfg.StripeSize; ss > 0 && limit > ss && g.rng.IntN(3) == 0 {
		b := ss * (1 + g.rng.Int64N(limit/ss))
		off := b - 4096 + g.rng.Int64N(8192)
		return min(max(off, 0), limit-1)
	}
	return g.rng.Int64N(limit)
}

// length draws an I/O length from 1 to MaxIO, small ones more often.
func (g *generator) length() int64 {
	switch g.rng.IntN(4) {
	case 0:
		return 1 + g.rng.Int64N(512)
	case 1:
		return 1 + g.rng.Int64N(8192)
	}
	return 1 + g.rng.Int64N(g.cfg.MaxIO)
}

// fill draws the operands of op; it reports false when the kind cannot
// apply now (a mapped read of an empty file, an absent feature), and a
// new kind is drawn.
func (g *generator) fill(op *Op, size int64) bool {
	maxSize := g.cfg.MaxSize
	switch op.Kind {
	case Read:
		if size == 0 {
			return false
		}
		// Some reads run past the end: the short count is checked.
		op.Off = g.offset(size)
		op.Len = g.length()
	case Write, MapWrite:
		op.Off = g.offset(maxSize)
		op.Len = min(g.length(), maxSize-op.Off)
	case MapRead:
		if size == 0 {
			return false
		}
		op.Off = g.offset(size)
		op.Len = min(g.length(), size-op.Off)
	case Truncate:
		// Alternate up and down as fsx does, so sizes wander the range.
		if size > maxSize/2 || g.rng.IntN(3) == 0 {
			op.Len = g.rng.Int64N(size + 1)
		} else {
			op.Len = size + g.rng.Int64N(maxSize-size+1)
		}
	case Fallocate:
		op.Mode = fallocModes[g.rng.IntN(len(fallocModes))]
		if g.absent(Fallocate, op.Mode) {
			return false
		}
		op.Off = g.offset(maxSize)
		op.Len = min(g.length(), maxSize-op.Off)
	case CopyFrom:
		// Sometimes past the source's end: the short count is checked.
		op.SrcOff = g.rng.Int64N(g.cfg.SourceSize)
		op.Off = g.offset(maxSize)
		op.Len = min(g.length(), maxSize-op.Off)
	case CopyWithin:
		return g.fillCopyWithin(op, size)
	case Fsync:
		op.Mode = uint32(g.rng.IntN(2))
	}
	return !g.absent(op.Kind, op.Mode)
}

// fillCopyWithin picks a source range inside the file and a destination
// that does not overlap it (the kernel refuses overlapping copies within
// one file), possibly past the end.
func (g *generator) fillCopyWithin(op *Op, size int64) bool {
	if size < 2 {
		return false
	}
	op.SrcOff = g.offset(size)
	op.Len = min(g.length(), size-op.SrcOff, g.cfg.MaxSize/4)
	for range 8 {
		op.Off = g.offset(g.cfg.MaxSize - op.Len)
		if op.Off+op.Len <= op.SrcOff || op.SrcOff+op.Len <= op.Off {
			return !g.absent(CopyWithin, 0)
		}
	}
	return false
}

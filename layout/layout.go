// Package layout describes how a file's bytes are placed on objects: Lustre
// PFL-style composite layouts whose components stripe an extent of the file
// RAID0 over objects on OSTs, and the pure mapping functions between file
// extents and object extents.
//
// The package does no I/O and allocates nothing on its mapping paths, so the
// client can call it for every read and write. OST selection for new files
// (Allocator) lives here too because it is pure policy over a table of
// targets; the MDS owns the table and calls it.
package layout

import (
	"errors"
	"fmt"
	"math"
)

// EOF is the End of a component that extends to the end of the file.
// It prints as -1 in JSON and command output.
const EOF int64 = math.MaxInt64

// StripeAlign is the unit every stripe size and component boundary must be a
// multiple of, as in Lustre.
const StripeAlign = 64 << 10

// Defaults that a filesystem gets at format unless the admin chooses others.
const (
	DefaultStripeCount = 1
	DefaultStripeSize  = 1 << 20
)

// Pattern is a component's data pattern.
type Pattern string

// PatternRAID0 stripes data round robin over the component's objects.
const PatternRAID0 Pattern = "raid0"

// Errors returned by validation and allocation.
var (
	ErrStripeSize   = errors.New("layout: stripe size must be a positive multiple of 64 KiB")
	ErrStripeCount  = errors.New("layout: invalid stripe count")
	ErrExtent       = errors.New("layout: component extents must be increasing, 64 KiB aligned and end at EOF")
	ErrNoTargets    = errors.New("layout: not enough active OSTs for the requested stripe count")
	ErrUnknownOST   = errors.New("layout: OST index not in the target table")
	ErrUnknownPool  = errors.New("layout: no active OST in pool")
	ErrDuplicateOST = errors.New("layout: OST listed twice")
)

// ObjectID names an object: the file (inode number) it belongs to and a
// sequence number unique within that file. The OSS checks Ino against the
// capability, so an object can be authorized without a lookup.
type ObjectID struct {
	Ino uint64 `msgpack:"i" json:"ino"`
	Seq uint32 `msgpack:"s" json:"seq"`
}

// String formats the id as Lustre formats FIDs: 0xINO:0xSEQ.
func (id ObjectID) String() string { return fmt.Sprintf("0x%x:0x%x", id.Ino, id.Seq) }

// Object is one stripe's object: where it lives and its id.
type Object struct {
	OST uint32   `msgpack:"o"`
	ID  ObjectID `msgpack:"i"`
}

// Component covers the file extent [Start, End) with one pattern. Object
// offsets are relative to Start: the first byte of the component is at
// offset 0 of object 0.
type Component struct {
	Start       int64    `msgpack:"s"`
	End         int64    `msgpack:"e"` // EOF for the last component
	Pattern     Pattern  `msgpack:"p"`
	StripeCount uint32   `msgpack:"c"`
	StripeSize  int64    `msgpack:"z"`
	Pool        string   `msgpack:"P,omitempty"`
	Objects     []Object `msgpack:"o"` // len == StripeCount
}

// Layout is a file's instantiated layout. Gen increases whenever the layout
// changes (setstripe on an empty file, migrate, HSM release and restore).
type Layout struct {
	Gen        uint32      `msgpack:"g"`
	Components []Component `msgpack:"c"`
	// Released marks the layout of a file whose data HSM moved to an
	// archive (Lustre's LOV_PATTERN_F_RELEASED): the components keep
	// their stripe count, size and pool but hold no objects, and the
	// data must be restored before it can be read (see released.go).
	Released bool `msgpack:"r,omitempty" json:",omitempty"`
}

// ComponentSpec is a requested component before objects are allocated.
// Zero fields take the defaults they are resolved against.
type ComponentSpec struct {
	End          int64    `msgpack:"e"` // EOF for the last; 0 is read as EOF
	StripeCount  int32    `msgpack:"c"` // 0: default; -1: all OSTs
	StripeSize   int64    `msgpack:"z"` // 0: default
	StripeOffset int32    `msgpack:"o"` // first OST; -1 (or 0 with no OSTs field set... see Validate): MDS chooses
	OSTs         []uint32 `msgpack:"O,omitempty"`
	Pool         string   `msgpack:"P,omitempty"`
}

// Spec is a requested layout: a directory default, a filesystem default,
// or the argument of setstripe.
type Spec struct {
	Components []ComponentSpec `msgpack:"c"`
}

// IsZero reports whether the spec requests nothing (inherit).
func (s Spec) IsZero() bool { return len(s.Components) == 0 }

//go:build !(rdma && cgo)

package rdma

// Native returns the verbs over libibverbs and librdmacm. This binary was
// built without the rdma tag (or without cgo), so they report no devices
// and every connection uses TCP; build with -tags rdma for RDMA.
func Native() Verbs { return None() }

// NativeBuilt reports whether this binary has the cgo verbs (the rdma build
// tag); without them Native reports no devices whatever the hardware.
func NativeBuilt() bool { return false }

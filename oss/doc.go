// Package oss is Strata's object storage server: it serves one or more OSTs,
// each a directory on a local file system, and answers the object requests
// of clients and of the MDS (write, read, punch, sync, getattr, destroy,
// statfs) after checking the capability every request carries.
//
// An object is a plain file under its OST directory,
// O/<ino&0xff as %02x>/<ino as %016x>.<seq as %08x>, with its owner (inode,
// sequence, stripe) recorded in the xattr user.strata.owner for fsck. Writes
// land in the page cache; a sync request or a write flagged Sync makes them
// durable with fdatasync.
//
// The package holds the storage layer (OST, usable on its own by tools such
// as fsck) and the server (Run, Server) that exposes it over package rpc and
// registers with the MDS. It knows nothing of files, layouts or namespaces:
// the MDS hands those out and the client maps file extents to objects.
package oss

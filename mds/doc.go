// Package mds is Strata's metadata server: the namespace (lookup, create,
// rename, link counts, permissions), open files and their size merging,
// layouts and their objects' lifecycle (truncate, orphans, the destroy
// queue), extended attributes, client sessions and the OST and MDT tables.
//
// All durable state lives in a transactional key-value store (package
// mds/kv; the key schema is in keys.go). Every namespace mutation is one
// transaction, retried on conflict, so a crash never leaves half an
// operation visible. In memory the server keeps only what may be lost:
// sessions and open handles (clients reconnect and reopen), fcntl and
// flock locks (lost on restart: there is no lock recovery yet), OST usage
// (heartbeats restore it) and inode-number batches.
//
// Service holds the logic and is called directly by tests; Run serves it
// over rpc. Format writes a new filesystem. The package does not do file
// I/O: it reaches objects only through ObjectIO, to truncate and destroy
// them. Byte-range and flock locks are served from the in-memory table of
// package mds/lock (locks.go); POSIX ACLs live in the inode (acl.go).
package mds

// Package proto defines the messages that cross the wire between Strata
// processes: the opcodes served by the MDS and the OSS, the request and reply
// bodies (encoded with msgpack inside an rpc frame), credentials, attributes
// and the capability tokens that let a client touch a file's objects.
//
// It holds no I/O and no server logic: the MDS (package mds), the OSS
// (package oss) and the client (package client) all import it, so it is the
// one place where the protocol is written down.
//
// Errors travel as POSIX errno values in the frame status (see package rpc);
// a handler returns an error wrapping a syscall.Errno and the caller sees an
// error for which errors.Is(err, syscall.ENOENT) holds.
package proto

package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Error is a failed call as the caller sees it.
type Error struct {
	Errno syscall.Errno // the status of the reply (or a local failure's errno)
	Msg   string        // the server's error text

	// cause is the local error behind a local failure (a dial error, the
	// context's error), so errors.Is(err, context.DeadlineExceeded) holds on
	// a timed-out call.
	cause error
}

func (e *Error) Error() string { return e.Msg }

// Is lets errors.Is match an *Error against a syscall.Errno.
func (e *Error) Is(target error) bool {
	errno, ok := target.(syscall.Errno)
	return ok && errno == e.Errno
}

// Unwrap returns the local error behind a local failure, or nil for an error
// reported by the server.
func (e *Error) Unwrap() error { return e.cause }

// localError returns an *Error for a failure on this side of the wire.
func localError(errno syscall.Errno, cause error, format string, args ...any) *Error {
	return &Error{Errno: errno, Msg: fmt.Sprintf(format, args...), cause: cause}
}

// errnoOf maps a handler's error to the status a reply carries: the errno it
// wraps, the Errno of an *Error, else EIO.
func errnoOf(err error) syscall.Errno {
	var rerr *Error
	if errors.As(err, &rerr) && rerr.Errno != 0 {
		return rerr.Errno
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errno
	}
	return syscall.EIO
}

// dialErrno picks the errno that best describes why a dial failed.
func dialErrno(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
			syscall.EHOSTDOWN, syscall.ENETDOWN, syscall.ETIMEDOUT, syscall.EADDRNOTAVAIL:
			return errno
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return syscall.EHOSTUNREACH
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return syscall.ETIMEDOUT
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return syscall.ETIMEDOUT
	}
	return syscall.ECONNREFUSED
}

// ctxError turns the end of a call's context into an *Error: ETIMEDOUT for a
// deadline, EINTR for a cancellation (the errno FUSE reports for an
// interrupted request).
func ctxError(err error, addr string, op uint16) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return localError(syscall.ETIMEDOUT, err, "rpc: %s: op %d timed out", addr, op)
	}
	return localError(syscall.EINTR, err, "rpc: %s: op %d interrupted: %v", addr, op, err)
}

package lock

import (
	"context"
	"errors"
	"math"
	"slices"
	"syscall"
	"testing"

	"github.com/stratafs/strata/proto"
)

const (
	testIno = 7
	eof     = math.MaxInt64
)

// owner n of session 1 unless stated, with pid 100+n.
func own(n uint64) Owner { return Owner{Session: 1, Owner: n, Pid: uint32(100 + n)} }

func req(o Owner, typ uint8, start, end int64) Request {
	return Request{Ino: testIno, Owner: o, Type: typ, Start: start, End: end}
}

func rd(n uint64, start, end int64) Request { return req(own(n), proto.LockRead, start, end) }
func wr(n uint64, start, end int64) Request { return req(own(n), proto.LockWrite, start, end) }
func un(n uint64, start, end int64) Request { return req(own(n), proto.LockUnlock, start, end) }

func flk(n uint64, typ uint8) Request {
	return Request{Ino: testIno, Owner: own(n), Type: typ, Flock: true}
}

// span is an expected lock: owner n of session 1 (unless flock), as own(n).
type span struct {
	owner      uint64
	typ        uint8
	start, end int64
	flock      bool
}

func spans(cs []Conflict) []span {
	out := make([]span, 0, len(cs))
	for _, c := range cs {
		out = append(out, span{owner: c.Owner.Owner, typ: c.Type, start: c.Start, end: c.End, flock: c.Flock})
	}
	return out
}

const (
	R  = proto.LockRead
	W  = proto.LockWrite
	UN = proto.LockUnlock
)

type step struct {
	r    Request
	want error
}

func ok(r Request) step               { return step{r: r} }
func fails(r Request, err error) step { return step{r: r, want: err} }

func TestLockSemantics(t *testing.T) {
	other := Owner{Session: 2, Owner: 1, Pid: 201} // same owner id, another client
	tests := []struct {
		name  string
		steps []step
		want  []span
	}{
		{"reads share", []step{ok(rd(1, 0, 9)), ok(rd(2, 5, 14))},
			[]span{{1, R, 0, 9, false}, {2, R, 5, 14, false}}},
		{"write excludes read", []step{ok(rd(1, 0, 9)), fails(wr(2, 5, 14), syscall.EAGAIN)},
			[]span{{1, R, 0, 9, false}}},
		{"read excludes write", []step{ok(wr(1, 0, 9)), fails(rd(2, 9, 9), syscall.EAGAIN), ok(rd(2, 10, 20))},
			[]span{{1, W, 0, 9, false}, {2, R, 10, 20, false}}},
		{"write excludes write", []step{ok(wr(1, 0, 9)), fails(wr(2, 0, 0), syscall.EAGAIN)},
			[]span{{1, W, 0, 9, false}}},
		{"other client with same owner id conflicts",
			[]step{ok(wr(1, 0, 9)), fails(req(other, W, 0, 9), syscall.EAGAIN)},
			[]span{{1, W, 0, 9, false}}},
		{"same owner never conflicts", []step{ok(wr(1, 0, 9)), ok(wr(1, 0, 9)), ok(rd(1, 5, 5))},
			[]span{{1, W, 0, 4, false}, {1, R, 5, 5, false}, {1, W, 6, 9, false}}},
		{"replace whole range", []step{ok(wr(1, 0, 9)), ok(rd(1, 0, 9))},
			[]span{{1, R, 0, 9, false}}},
		{"merge overlapping", []step{ok(rd(1, 0, 9)), ok(rd(1, 5, 14))},
			[]span{{1, R, 0, 14, false}}},
		{"merge adjacent", []step{ok(rd(1, 10, 19)), ok(rd(1, 0, 9))},
			[]span{{1, R, 0, 19, false}}},
		{"merge bridges a gap", []step{ok(rd(1, 0, 9)), ok(rd(1, 20, 29)), ok(rd(1, 10, 19))},
			[]span{{1, R, 0, 29, false}}},
		{"merge swallows contained", []step{ok(wr(1, 3, 4)), ok(wr(1, 7, 8)), ok(wr(1, 0, 9))},
			[]span{{1, W, 0, 9, false}}},
		{"adjacent of other type stays apart", []step{ok(rd(1, 0, 9)), ok(wr(1, 10, 19))},
			[]span{{1, R, 0, 9, false}, {1, W, 10, 19, false}}},
		{"adjacent of other owner stays apart", []step{ok(rd(1, 0, 9)), ok(rd(2, 10, 19))},
			[]span{{1, R, 0, 9, false}, {2, R, 10, 19, false}}},
		{"upgrade middle", []step{ok(rd(1, 0, 99)), ok(wr(1, 40, 59))},
			[]span{{1, R, 0, 39, false}, {1, W, 40, 59, false}, {1, R, 60, 99, false}}},
		{"downgrade middle", []step{ok(wr(1, 0, 99)), ok(rd(1, 40, 59))},
			[]span{{1, W, 0, 39, false}, {1, R, 40, 59, false}, {1, W, 60, 99, false}}},
		{"write across reads", []step{ok(rd(1, 0, 9)), ok(rd(1, 20, 29)), ok(wr(1, 5, 24))},
			[]span{{1, R, 0, 4, false}, {1, W, 5, 24, false}, {1, R, 25, 29, false}}},
		{"upgrade blocked by other reader", []step{ok(rd(1, 0, 9)), ok(rd(2, 0, 9)), fails(wr(1, 0, 9), syscall.EAGAIN)},
			[]span{{1, R, 0, 9, false}, {2, R, 0, 9, false}}},
		{"upgrade after other reader leaves", []step{ok(rd(1, 0, 9)), ok(rd(2, 0, 9)), ok(un(2, 0, 9)), ok(wr(1, 0, 9))},
			[]span{{1, W, 0, 9, false}}},
		{"unlock middle", []step{ok(wr(1, 0, 99)), ok(un(1, 40, 59))},
			[]span{{1, W, 0, 39, false}, {1, W, 60, 99, false}}},
		{"unlock across several", []step{ok(rd(1, 0, 9)), ok(wr(1, 20, 29)), ok(rd(1, 40, 49)), ok(un(1, 5, 44))},
			[]span{{1, R, 0, 4, false}, {1, R, 45, 49, false}}},
		{"unlock of nothing", []step{ok(un(1, 0, eof))}, []span{}},
		{"unlock leaves other owners", []step{ok(rd(1, 0, 9)), ok(rd(2, 0, 9)), ok(un(2, 0, eof))},
			[]span{{1, R, 0, 9, false}}},
		{"to EOF", []step{ok(wr(1, 100, -1)), fails(rd(2, 1<<40, 1<<40), syscall.EAGAIN), ok(rd(2, 0, 99))},
			[]span{{2, R, 0, 99, false}, {1, W, 100, eof, false}}},
		{"to EOF as MaxInt64", []step{ok(wr(1, 100, eof)), fails(rd(2, eof, eof), syscall.EAGAIN)},
			[]span{{1, W, 100, eof, false}}},
		{"merge to EOF", []step{ok(rd(1, 0, -1)), ok(rd(1, 50, 60)), ok(rd(1, 5, -1))},
			[]span{{1, R, 0, eof, false}}},
		{"unlock tail to EOF", []step{ok(wr(1, 0, -1)), ok(un(1, 100, -1))},
			[]span{{1, W, 0, 99, false}}},
		{"unlock middle of EOF range", []step{ok(wr(1, 0, -1)), ok(un(1, 10, 19))},
			[]span{{1, W, 0, 9, false}, {1, W, 20, eof, false}}},
		{"invalid", []step{
			fails(rd(1, -1, 5), syscall.EINVAL),
			fails(rd(1, 10, 5), syscall.EINVAL),
			fails(rd(1, 0, -2), syscall.EINVAL),
			fails(un(1, 10, 5), syscall.EINVAL),
			fails(req(own(1), 3, 0, 9), syscall.EINVAL),
			fails(Request{Ino: testIno, Owner: own(1), Type: 9, Flock: true}, syscall.EINVAL),
		}, []span{}},
		{"single byte at zero", []step{ok(wr(1, 0, 0)), ok(wr(2, 1, 1))},
			[]span{{1, W, 0, 0, false}, {2, W, 1, 1, false}}},
		{"flock shared", []step{ok(flk(1, R)), ok(flk(2, R)), fails(flk(3, W), syscall.EAGAIN)},
			[]span{{1, R, 0, eof, true}, {2, R, 0, eof, true}}},
		{"flock exclusive", []step{ok(flk(1, W)), fails(flk(2, R), syscall.EAGAIN), fails(flk(2, W), syscall.EAGAIN)},
			[]span{{1, W, 0, eof, true}}},
		{"flock ignores range", []step{ok(Request{Ino: testIno, Owner: own(1), Type: W, Start: -5, End: -9, Flock: true})},
			[]span{{1, W, 0, eof, true}}},
		{"flock upgrade", []step{ok(flk(1, R)), ok(flk(1, W))}, []span{{1, W, 0, eof, true}}},
		{"flock downgrade", []step{ok(flk(1, W)), ok(flk(1, R)), ok(flk(2, R))},
			[]span{{1, R, 0, eof, true}, {2, R, 0, eof, true}}},
		{"flock failed non-blocking upgrade keeps lock", []step{ok(flk(1, R)), ok(flk(2, R)), fails(flk(1, W), syscall.EAGAIN)},
			[]span{{1, R, 0, eof, true}, {2, R, 0, eof, true}}},
		{"flock unlock", []step{ok(flk(1, W)), ok(flk(1, UN)), ok(flk(2, W))},
			[]span{{2, W, 0, eof, true}}},
		{"flock and fcntl independent", []step{ok(wr(1, 0, -1)), ok(flk(2, W)), fails(flk(1, R), syscall.EAGAIN), fails(rd(2, 0, 0), syscall.EAGAIN)},
			[]span{{1, W, 0, eof, false}, {2, W, 0, eof, true}}},
		{"fcntl unlock leaves flock", []step{ok(flk(1, W)), ok(wr(1, 0, 9)), ok(un(1, 0, eof))},
			[]span{{1, W, 0, eof, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newChecked(t)
			for i, s := range tc.steps {
				if err := m.Lock(context.Background(), s.r, false); !errors.Is(err, s.want) || (err == nil) != (s.want == nil) {
					t.Fatalf("step %d %+v: got %v, want %v", i, s.r, err, s.want)
				}
			}
			if got := spans(m.Locks(testIno)); !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
				t.Errorf("locks:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestPidRecorded(t *testing.T) {
	m := newChecked(t)
	r := wr(1, 0, 9)
	r.Owner.Pid = 4242
	if err := m.Lock(context.Background(), r, false); err != nil {
		t.Fatal(err)
	}
	r.Owner.Pid = 4343 // another thread of the same process extends the lock
	r.Start, r.End = 10, 19
	if err := m.Lock(context.Background(), r, false); err != nil {
		t.Fatal(err)
	}
	got := m.Locks(testIno)
	want := []Conflict{{Type: W, Start: 0, End: 19, Pid: 4343, Owner: Owner{Session: 1, Owner: 1, Pid: 4343}}}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestTest(t *testing.T) {
	m := newChecked(t)
	for _, r := range []Request{wr(1, 10, 19), rd(2, 30, 39), rd(3, 35, -1), flk(4, R)} {
		if err := m.Lock(context.Background(), r, false); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		r    Request
		want Conflict
		ok   bool
		err  error
	}{
		{"write lock reported with pid", rd(9, 0, -1),
			Conflict{Type: W, Start: 10, End: 19, Pid: 101, Owner: own(1)}, true, nil},
		{"first by start", wr(9, 15, 40),
			Conflict{Type: W, Start: 10, End: 19, Pid: 101, Owner: own(1)}, true, nil},
		{"read locks block writes", wr(9, 20, 100),
			Conflict{Type: R, Start: 30, End: 39, Pid: 102, Owner: own(2)}, true, nil},
		{"to EOF", wr(9, 1000, -1),
			Conflict{Type: R, Start: 35, End: eof, Pid: 103, Owner: own(3)}, true, nil},
		{"reads share", rd(9, 30, 100), Conflict{}, false, nil},
		{"gap", wr(9, 20, 29), Conflict{}, false, nil},
		{"own locks never conflict", wr(1, 0, 19), Conflict{}, false, nil},
		{"flock", flk(9, W),
			Conflict{Type: R, Start: 0, End: eof, Pid: 104, Owner: own(4), Flock: true}, true, nil},
		{"flock shared", flk(9, R), Conflict{}, false, nil},
		{"unlock is invalid", un(9, 0, 9), Conflict{}, false, syscall.EINVAL},
		{"bad range", rd(9, 5, 4), Conflict{}, false, syscall.EINVAL},
		{"unknown inode", Request{Ino: 99, Owner: own(9), Type: W, End: -1}, Conflict{}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := m.Test(tc.r)
			if got != tc.want || ok != tc.ok || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Errorf("Test(%+v) = %+v, %v, %v; want %+v, %v, %v", tc.r, got, ok, err, tc.want, tc.ok, tc.err)
			}
		})
	}
}

func TestReleaseOwner(t *testing.T) {
	m := newChecked(t)
	for _, r := range []Request{wr(1, 0, 9), rd(1, 20, -1), rd(2, 20, 29), flk(1, W)} {
		if err := m.Lock(context.Background(), r, false); err != nil {
			t.Fatal(err)
		}
	}
	m.ReleaseOwner(testIno, Owner{Session: 1, Owner: 1}, false)
	want := []span{{2, R, 20, 29, false}, {1, W, 0, eof, true}}
	if got := spans(m.Locks(testIno)); !slices.Equal(got, want) {
		t.Errorf("after fcntl release: got %v, want %v", got, want)
	}
	m.ReleaseOwner(testIno, Owner{Session: 1, Owner: 1}, true)
	m.ReleaseOwner(testIno, Owner{Session: 1, Owner: 2}, false)
	m.ReleaseOwner(12345, own(1), false)
	if got := m.Locks(testIno); len(got) != 0 {
		t.Errorf("after all releases: %v", got)
	}
}

func TestReleaseSessionDropsLocks(t *testing.T) {
	m := newChecked(t)
	s2 := Owner{Session: 2, Owner: 1, Pid: 7}
	for _, r := range []Request{wr(1, 0, 9), flk(2, R), req(s2, R, 20, 29),
		{Ino: 8, Owner: own(3), Type: W, End: -1}} {
		if err := m.Lock(context.Background(), r, false); err != nil {
			t.Fatal(err)
		}
	}
	m.ReleaseSession(1)
	want := []span{{1, R, 20, 29, false}}
	if got := spans(m.Locks(testIno)); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := m.Locks(8); len(got) != 0 {
		t.Errorf("ino 8 still locked: %v", got)
	}
	m.ReleaseSession(2)
	m.ReleaseSession(3)
	if got := m.Locks(testIno); len(got) != 0 {
		t.Errorf("still locked: %v", got)
	}
}

func TestCancelledContextNotGranted(t *testing.T) {
	m := newChecked(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, wait := range []bool{false, true} {
		if err := m.Lock(ctx, wr(1, 0, 9), wait); err != syscall.EINTR {
			t.Errorf("wait %v: got %v, want EINTR", wait, err)
		}
	}
	if got := m.Locks(testIno); len(got) != 0 {
		t.Errorf("granted: %v", got)
	}
}

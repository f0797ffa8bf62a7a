package oss

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
)

// powerLoss is an OST over a crashFS that can lose power and come back.
type powerLoss struct {
	t   *testing.T
	dir string
	fs  *crashFS
	o   *OST
}

func newPowerLoss(t *testing.T) *powerLoss {
	p := &powerLoss{t: t, dir: t.TempDir(), fs: newCrashFS()}
	p.open()
	t.Cleanup(func() { p.o.Close() })
	return p
}

func (p *powerLoss) open() {
	p.t.Helper()
	o, err := OpenOST(p.dir, WithLogger(quiet), withFS(p.fs))
	if err != nil {
		p.t.Fatal(err)
	}
	p.o = o
}

// crash loses power: the OST's process dies (its handles go without a
// flush) and the file system keeps only what was synced.
func (p *powerLoss) crash() {
	p.t.Helper()
	p.o.handles.drain()
	p.o.tomb.close()
	p.o.lock.Close()
	if err := p.fs.Crash(); err != nil {
		p.t.Fatal(err)
	}
	p.open()
}

// TestPowerLossFsync: data synced by ObjSync survives; data not synced is
// lost (the simulation works), and the OST's verifier changes, so a client
// that wrote it learns at its next fsync.
func TestPowerLossFsync(t *testing.T) {
	p := newPowerLoss(t)
	synced, unsynced := obj(1, 0), obj(2, 0)
	mustWrite(t, p.o, synced, 0, pattern(10000, 1))
	if err := p.o.Sync(synced.ID); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, p.o, unsynced, 0, pattern(10000, 2))
	v := p.o.Verifier()
	p.crash()
	if got := mustRead(t, p.o, synced.ID, 0, 20000); !bytes.Equal(got, pattern(10000, 1)) {
		t.Fatalf("synced object reads %d bytes after power loss, want its 10000", len(got))
	}
	if got := mustRead(t, p.o, unsynced.ID, 0, 20000); len(got) != 0 {
		t.Fatalf("unsynced object survived the power loss with %d bytes: the simulation drops nothing", len(got))
	}
	if p.o.Verifier() == v {
		t.Fatal("the verifier did not change across a power loss")
	}
}

// TestPowerLossOSync: a write with Sync set (O_SYNC, O_DIRECT) is durable
// when it returns.
func TestPowerLossOSync(t *testing.T) {
	p := newPowerLoss(t)
	ob := obj(3, 1)
	if _, err := p.o.Write(ob, 4096, pattern(5000, 3), true, Access{}); err != nil {
		t.Fatal(err)
	}
	p.crash()
	if got := mustRead(t, p.o, ob.ID, 4096, 5000); !bytes.Equal(got, pattern(5000, 3)) {
		t.Fatalf("O_SYNC write lost in a power loss (%d bytes back)", len(got))
	}
}

// TestPowerLossTruncate: a punch is durable when it returns, epoch and all,
// so a truncate the MDS then commits never comes undone on the OST.
func TestPowerLossTruncate(t *testing.T) {
	p := newPowerLoss(t)
	ob := obj(4, 0)
	mustWrite(t, p.o, ob, 0, pattern(8192, 4))
	if err := p.o.Sync(ob.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.o.Punch(ob, 100, Access{Epoch: 7}); err != nil {
		t.Fatal(err)
	}
	p.crash()
	if got := mustRead(t, p.o, ob.ID, 0, 8192); !bytes.Equal(got, pattern(8192, 4)[:100]) {
		t.Fatalf("after power loss a truncated object reads %d bytes, want 100", len(got))
	}
	if _, err := p.o.Write(ob, 0, []byte("old"), false, Access{Epoch: 6}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("write of an older epoch after power loss: %v, want ESTALE", err)
	}
	if _, err := p.o.Write(ob, 0, []byte("new"), false, Access{Epoch: 7}); err != nil {
		t.Fatalf("write of the current epoch: %v", err)
	}
}

// TestPowerLossDestroy: a destroyed object stays destroyed after a power
// loss: it neither reappears nor can be recreated by a stale client.
func TestPowerLossDestroy(t *testing.T) {
	p := newPowerLoss(t)
	ob := obj(5, 0)
	mustWrite(t, p.o, ob, 0, pattern(4096, 5))
	if err := p.o.Sync(ob.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.o.Destroy(ob.ID); err != nil {
		t.Fatal(err)
	}
	p.crash()
	if attr, err := p.o.Getattr(ob.ID); err != nil || attr.Exists {
		t.Fatalf("destroyed object after power loss: %+v %v", attr, err)
	}
	if _, _, err := p.o.Read(ob.ID, 0, make([]byte, 10), Access{}); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("read of a destroyed object after power loss: %v, want ESTALE", err)
	}
}

// TestVerifierSurvivesProcessRestart: a process restart keeps the page
// cache, so the verifier stays and clients need not resend anything.
func TestVerifierSurvivesProcessRestart(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOST(dir, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	v := o.Verifier()
	o.Close()
	o, err = OpenOST(dir, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Verifier() != v || v == 0 {
		t.Fatalf("verifier %x after a restart, was %x", o.Verifier(), v)
	}
}

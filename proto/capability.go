package proto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"
)

// Capability errors.
var (
	ErrCapInvalid = errors.New("proto: capability signature invalid")
	ErrCapExpired = errors.New("proto: capability expired")
	ErrCapRights  = errors.New("proto: capability does not grant this access")
)

// SignCapability issues a capability for ino with rights until expiry,
// signed with the cluster secret, for layout generation 0 and truncate
// epoch 0.
func SignCapability(secret []byte, ino uint64, rights uint8, expiry time.Time) Capability {
	return Capability{Ino: ino, Rights: rights, Expiry: expiry.UnixNano()}.Signed(secret)
}

// Signed returns c with its MAC computed over every field but the MAC.
func (c Capability) Signed(secret []byte) Capability {
	c.MAC = c.mac(secret)
	return c
}

func (c *Capability) mac(secret []byte) []byte {
	var buf [29]byte
	binary.BigEndian.PutUint64(buf[0:8], c.Ino)
	buf[8] = c.Rights
	binary.BigEndian.PutUint64(buf[9:17], uint64(c.Expiry))
	binary.BigEndian.PutUint32(buf[17:21], c.Gen)
	binary.BigEndian.PutUint64(buf[21:29], c.Epoch)
	h := hmac.New(sha256.New, secret)
	h.Write([]byte("strata-cap-v2"))
	h.Write(buf[:])
	return h.Sum(nil)
}

// Verify checks the signature, the expiry against now and that the
// capability grants want (RightRead and/or RightWrite) for ino.
func (c *Capability) Verify(secret []byte, ino uint64, want uint8, now time.Time) error {
	if c.Ino != ino || !hmac.Equal(c.MAC, c.mac(secret)) {
		return ErrCapInvalid
	}
	if now.UnixNano() > c.Expiry {
		return ErrCapExpired
	}
	if c.Rights&want != want {
		return ErrCapRights
	}
	return nil
}

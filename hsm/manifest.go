package hsm

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
)

// Checksums. An archive copy is written in chunks, several at once, so its
// checksum is per chunk: CRC-32C (hardware-accelerated, fast enough not to
// slow a copy) of every chunk, kept in a manifest object beside the copy.
// The MDS records a digest of the manifest (the file's HSM checksum); a
// restore checks the manifest against that digest and each chunk against
// the manifest as it arrives, so a corrupted copy is found before a byte
// of it reaches the file.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// manifestSuffix names the manifest beside an archive copy.
const manifestSuffix = ".strata-manifest"

// manifest describes an archive copy.
type manifest struct {
	FSName      string   `json:"fsname"`
	Ino         uint64   `json:"ino"`
	DataVersion uint64   `json:"data_version"`
	Size        int64    `json:"size"`
	ChunkSize   int64    `json:"chunk_size"`
	CRC32C      []uint32 `json:"crc32c"`
}

// chunkCRC is the checksum of one chunk.
func chunkCRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// digest is the file's HSM checksum: the copy's size and chunking and a
// CRC-32C over its chunks' checksums.
func (m *manifest) digest() string {
	var b []byte
	for _, c := range m.CRC32C {
		b = binary.BigEndian.AppendUint32(b, c)
	}
	return fmt.Sprintf("crc32c:%d:%d:%08x", m.Size, m.ChunkSize, chunkCRC(b))
}

// chunks is how many chunks a copy of the manifest's size has.
func (m *manifest) chunks() int {
	if m.ChunkSize <= 0 {
		return 0
	}
	return int((m.Size + m.ChunkSize - 1) / m.ChunkSize)
}

// parseManifest decodes a manifest and checks it against the digest the
// MDS recorded and the file's size.
func parseManifest(data []byte, digest string, size int64) (*manifest, error) {
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("hsm: bad manifest: %w", err)
	}
	if got := m.digest(); got != digest {
		return nil, fmt.Errorf("hsm: manifest digest %s, the file's is %s", got, digest)
	}
	if m.Size != size || len(m.CRC32C) != m.chunks() {
		return nil, fmt.Errorf("hsm: manifest of %d bytes in %d chunks for a file of %d bytes", m.Size, len(m.CRC32C), size)
	}
	return &m, nil
}

// jsonManifest encodes a manifest.
func jsonManifest(m *manifest) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("hsm: encode manifest: %w", err)
	}
	return b, nil
}

package logs

import (
	"bytes"
	"errors"
	"hash/fnv"
	"io"
	"os"
	"syscall"
)

// fingerprintBytes is how much of a file's start identifies it besides its
// device and inode. 256 bytes hold the first CRI line's nanosecond
// timestamp, so two files that share an inode in turn (the inode was freed
// and reused) or share no inode at all (a copytruncate copy) are told apart
// or matched by content, as Vector and the OTel filelog receiver do.
const fingerprintBytes = 256

// fileID is the identity of a file: device and inode, plus the first bytes
// of its content (fewer than fingerprintBytes while the file is shorter;
// the fingerprint grows with the file).
type fileID struct {
	Dev, Ino uint64
}

func statID(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino}, true
}

// readFingerprint reads up to fingerprintBytes from the start of f.
func readFingerprint(f io.ReaderAt) ([]byte, error) {
	buf := make([]byte, fingerprintBytes)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:n], nil
}

// hasPrefix reports whether content (a file's first bytes) continues fp:
// the same file, or a copy of it.
func hasPrefix(content, fp []byte) bool { return bytes.HasPrefix(content, fp) }

// fpHash is what the positions file keeps of a fingerprint.
func fpHash(fp []byte) uint64 {
	h := fnv.New64a()
	h.Write(fp)
	return h.Sum64()
}

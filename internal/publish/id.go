package publish

import (
	"crypto/sha256"
	"encoding/hex"
)

// contentID is a short digest of a corp and a record, for dead letters,
// whose ids may be missing or unusable.
func contentID(corpID string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(corpID))
	h.Write([]byte{0})
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

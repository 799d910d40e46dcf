package intake

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/wecomhit/wecomhit/internal/broker"
)

// DeleteCorp deletes app's stored callback records that concern corp (a
// corp that cancelled the suite). Records are filed by app and kind, not
// corp, so it scans the app's records and reads each one's corp_id: its
// cost is the bytes stored for the app. A create_auth record names no corp
// (its corp is learned from the exchange) and is not deleted; it holds only
// a spent auth code and ages out with callback_max_age.
func (s *Store) DeleteCorp(ctx context.Context, app, corp string) (int, error) {
	st, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		return 0, fmt.Errorf("intake: stream %s: %w", StreamName, err)
	}
	n, err := broker.DeleteMatching(ctx, st, s.subjectPrefix+app+".>", func(data []byte) bool {
		var r struct {
			CorpID string `json:"corp_id"`
		}
		return json.Unmarshal(data, &r) == nil && r.CorpID == corp
	})
	if err != nil {
		return n, fmt.Errorf("intake: delete records of %s/%s: %w", app, corp, err)
	}
	return n, nil
}

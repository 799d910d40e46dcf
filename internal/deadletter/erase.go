package deadletter

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit/internal/broker"
)

// DeleteCorp deletes the dead letters of corp: its hit dead letters (a
// purge of HitSubject) and app's callback dead letters whose corp_id is
// corp (a scan: their subjects name the app and kind only).
func (s *Stream) DeleteCorp(ctx context.Context, app, corp string) error {
	st, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		return fmt.Errorf("deadletter: stream %s: %w", StreamName, err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(HitSubject(s.prefix, corp))); err != nil {
		return fmt.Errorf("deadletter: purge %s: %w", HitSubject(s.prefix, corp), err)
	}
	filter := s.prefix + ".dlq.callback." + Token(app) + ".>"
	_, err = broker.DeleteMatching(ctx, st, filter, func(data []byte) bool {
		var d struct {
			CorpID string `json:"corp_id"`
		}
		return json.Unmarshal(data, &d) == nil && d.CorpID == corp
	})
	if err != nil {
		return fmt.Errorf("deadletter: delete %s of %s: %w", filter, corp, err)
	}
	return nil
}

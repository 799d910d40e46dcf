package wecomhit_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
)

// TestCorpLifecycleEvent_Schema: the Go type and docs/corp-event.schema.json
// describe the same events.
func TestCorpLifecycleEvent_Schema(t *testing.T) {
	f, err := os.Open("docs/corp-event.schema.json")
	require.NoError(t, err)
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("corp-event.schema.json", doc))
	sch, err := c.Compile("corp-event.schema.json")
	require.NoError(t, err)

	at := time.Date(2026, 11, 27, 4, 2, 11, 0, time.UTC)
	authorized := wecomhit.CorpLifecycleEvent{Schema: wecomhit.CorpEventSchema, Type: wecomhit.CorpAuthorized,
		App: "archive", CorpID: "wwCorpABC123", CorpName: "Acme", Cause: "create_auth", EventTime: &at, PublishedAt: at}
	cancelled := wecomhit.CorpLifecycleEvent{Schema: wecomhit.CorpEventSchema, Type: wecomhit.CorpCancelled,
		App: "archive", CorpID: "wwCorpABC123", Cause: "cancel_auth", EventTime: &at, PublishedAt: at,
		Deleted: []string{wecomhit.CorpDataPermanentCode, wecomhit.CorpDataAccessTokens, wecomhit.CorpDataCursor,
			wecomhit.CorpDataLeases, wecomhit.CorpDataHitTokens, wecomhit.CorpDataRuleNames,
			wecomhit.CorpDataCallbackRecords, wecomhit.CorpDataHitEvents, wecomhit.CorpDataDeadLetters,
			wecomhit.CorpDataAuthorizedEvents}}
	seeded := authorized
	seeded.Cause, seeded.EventTime = "config", nil

	validate := func(ev wecomhit.CorpLifecycleEvent) error {
		raw, err := json.Marshal(ev)
		require.NoError(t, err)
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		require.NoError(t, err)
		return sch.Validate(v)
	}
	for name, ev := range map[string]wecomhit.CorpLifecycleEvent{"Authorized": authorized, "Cancelled": cancelled, "Seeded": seeded} {
		t.Run(name, func(t *testing.T) { assert.NoError(t, validate(ev)) })
	}
	bad := map[string]func(*wecomhit.CorpLifecycleEvent){
		"ErrAuthorizedWithDeleted": func(e *wecomhit.CorpLifecycleEvent) { e.Deleted = []string{"cursor"} },
		"ErrCancelledWithName": func(e *wecomhit.CorpLifecycleEvent) {
			e.Type, e.Cause, e.Deleted = wecomhit.CorpCancelled, "cancel_auth", []string{"cursor"}
		},
		"ErrCancelledNoDeleted": func(e *wecomhit.CorpLifecycleEvent) {
			e.Type, e.Cause, e.CorpName = wecomhit.CorpCancelled, "cancel_auth", ""
		},
		"ErrUnknownType":      func(e *wecomhit.CorpLifecycleEvent) { e.Type = "paused" },
		"ErrNoCorp":           func(e *wecomhit.CorpLifecycleEvent) { e.CorpID = "" },
		"ErrCauseOfOtherType": func(e *wecomhit.CorpLifecycleEvent) { e.Cause = "cancel_auth" },
	}
	for name, mutate := range bad {
		t.Run(name, func(t *testing.T) {
			ev := authorized
			mutate(&ev)
			assert.Error(t, validate(ev))
		})
	}
}

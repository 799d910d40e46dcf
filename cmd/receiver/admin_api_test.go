package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// apiDo calls the admin API with a token ("" for none).
func apiDo(t *testing.T, m *Main, method, path, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequest(method, "http://"+m.AdminAddr()+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// TestAdminAPI drives rules, search and status over the admin API against
// the simulator, and checks that without the token nothing reaches WeCom.
func TestAdminAPI(t *testing.T) {
	s := startSystem(t, "0s")
	m := s.m
	tok := testAdminToken

	t.Run("ErrUnauthorizedCallsNothing", func(t *testing.T) {
		// The start-up rule listing calls get_rule_list too: count after it.
		select {
		case <-m.rulesWarmed:
		case <-time.After(30 * time.Second):
			t.Fatal("start-up rule listing did not end")
		}
		before := s.sim.Requests("create_rule") + s.sim.Requests("get_rule_list")
		for _, c := range []struct{ method, path, token string }{
			{"GET", "/api/apps/archive/rules", ""},
			{"POST", "/api/apps/archive/rules", "wrong-token-wrong-token"},
			{"GET", "/api/status", ""},
		} {
			status, _ := apiDo(t, m, c.method, c.path, c.token, `{"name":"x","semantics":{"semantics_list":[2]}}`)
			assert.Equal(t, http.StatusUnauthorized, status, c.path)
		}
		assert.Equal(t, before, s.sim.Requests("create_rule")+s.sim.Requests("get_rule_list"))
	})

	var id string
	t.Run("Create", func(t *testing.T) {
		status, body := apiDo(t, m, "POST", "/api/apps/archive/rules", tok,
			`{"name":"接口规则","keyword":{"word_list":["加微信"]},"semantics":{"semantics_list":[2,3]}}`)
		require.Equal(t, http.StatusCreated, status, string(body))
		var out struct {
			RuleID string `json:"rule_id"`
		}
		require.NoError(t, json.Unmarshal(body, &out))
		require.NotEmpty(t, out.RuleID)
		id = out.RuleID
	})
	t.Run("ListAndGet", func(t *testing.T) {
		status, body := apiDo(t, m, "GET", "/api/apps/archive/rules", tok, "")
		require.Equal(t, http.StatusOK, status, string(body))
		var out struct {
			Rules []struct {
				RuleID string `json:"rule_id"`
				Name   string `json:"name"`
			} `json:"rules"`
		}
		require.NoError(t, json.Unmarshal(body, &out))
		assert.Len(t, out.Rules, 5, "4 from startSystem and the new one")
		status, body = apiDo(t, m, "GET", "/api/apps/archive/rules/"+id, tok, "")
		require.Equal(t, http.StatusOK, status, string(body))
		assert.Contains(t, string(body), `"接口规则"`)
		assert.Contains(t, string(body), `"加微信"`)
	})
	t.Run("UpdateClearsAndKeeps", func(t *testing.T) {
		status, body := apiDo(t, m, "PATCH", "/api/apps/archive/rules/"+id, tok, `{"name":"改名","words":[]}`)
		require.Equal(t, http.StatusOK, status, string(body))
		_, body = apiDo(t, m, "GET", "/api/apps/archive/rules/"+id, tok, "")
		var d struct {
			Name    string `json:"name"`
			Keyword *struct {
				WordList []string `json:"word_list"`
			} `json:"keyword"`
			Semantics *struct {
				SemanticsList []int `json:"semantics_list"`
			} `json:"semantics"`
		}
		require.NoError(t, json.Unmarshal(body, &d), string(body))
		assert.Equal(t, "改名", d.Name)
		if d.Keyword != nil {
			assert.Empty(t, d.Keyword.WordList, "[] cleared the words")
		}
		require.NotNil(t, d.Semantics)
		assert.Equal(t, []int{2, 3}, d.Semantics.SemanticsList, "absent semantics unchanged")
	})
	t.Run("ErrValidationSendsNothing", func(t *testing.T) {
		before := s.sim.Requests("create_rule")
		status, body := apiDo(t, m, "POST", "/api/apps/archive/rules", tok, `{"name":"这个规则的名字实在是太长了超过了二十个字的限制","semantics":{"semantics_list":[2]}}`)
		assert.Equal(t, http.StatusBadRequest, status)
		assert.Contains(t, string(body), `"field":"name"`)
		status, body = apiDo(t, m, "PATCH", "/api/apps/archive/rules/"+id, tok, `{"words":null}`)
		assert.Equal(t, http.StatusBadRequest, status, string(body))
		status, _ = apiDo(t, m, "POST", "/api/apps/archive/rules", tok, `{"name":"x","colour":"red"}`)
		assert.Equal(t, http.StatusBadRequest, status, "unknown fields are refused")
		assert.Equal(t, before, s.sim.Requests("create_rule"))
	})
	t.Run("Delete", func(t *testing.T) {
		status, _ := apiDo(t, m, "DELETE", "/api/apps/archive/rules/"+id, tok, "")
		assert.Equal(t, http.StatusNoContent, status)
		status, body := apiDo(t, m, "GET", "/api/apps/archive/rules/"+id, tok, "")
		assert.Equal(t, http.StatusBadGateway, status)
		assert.Contains(t, string(body), `"errcode":40058`)
	})
	t.Run("UnknownAppAndCorp", func(t *testing.T) {
		status, _ := apiDo(t, m, "GET", "/api/apps/nope/rules", tok, "")
		assert.Equal(t, http.StatusNotFound, status)
		status, _ = apiDo(t, m, "GET", "/api/apps/archive/rules?corp=wwOther", tok, "")
		assert.Equal(t, http.StatusNotFound, status)
	})
	t.Run("Search", func(t *testing.T) {
		msgs, err := s.sim.GenerateMessages(simCorp, 200)
		require.NoError(t, err)
		word := ""
		for _, msg := range msgs {
			if r := []rune(msg.Text); len(r) >= 4 {
				word = string(r[:2])
				break
			}
		}
		require.NotEmpty(t, word)
		status, body := apiDo(t, m, "POST", "/api/apps/archive/search", tok, `{"query_word":"`+word+`","limit":5}`)
		require.Equal(t, http.StatusOK, status, string(body))
		var out struct {
			MsgIDs []string `json:"msgids"`
			Count  int      `json:"count"`
		}
		require.NoError(t, json.Unmarshal(body, &out))
		assert.Positive(t, out.Count)
		assert.Len(t, out.MsgIDs, out.Count)
		status, _ = apiDo(t, m, "POST", "/api/apps/archive/search", tok, `{"query_word":"x"}`)
		assert.Equal(t, http.StatusBadRequest, status, "query_word needs 2 characters")
	})
	t.Run("ErrDraining", func(t *testing.T) {
		m.draining.Store(true)
		defer m.draining.Store(false)
		before := s.sim.Requests("get_rule_list")
		status, _ := apiDo(t, m, "GET", "/api/apps/archive/rules", tok, "")
		assert.Equal(t, http.StatusServiceUnavailable, status)
		assert.Equal(t, before, s.sim.Requests("get_rule_list"))
	})
	t.Run("Status", func(t *testing.T) {
		status, body := apiDo(t, m, "GET", "/api/status", tok, "")
		require.Equal(t, http.StatusOK, status, string(body))
		var rep statusReport
		require.NoError(t, json.Unmarshal(body, &rep))
		assert.Len(t, rep.Corps, 2, "archive and zone corps")
	})
}

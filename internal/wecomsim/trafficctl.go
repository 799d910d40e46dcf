package wecomsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// SetMessageRate sets every corp's background traffic rate (messages per
// conversation minute) from now on, replacing corps' own rates; 0 or
// negative stops traffic. Fault tests stop traffic to let the ground truth
// settle, then compare.
func (s *Sim) SetMessageRate(rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.MessageRate = rate
	for _, c := range s.order {
		c.rate = 0
		if rate > 0 {
			// From now, not from where traffic stopped, which would
			// release the whole pause as one burst.
			c.nextMsgAt = s.now.Add(s.interarrival())
			s.scheduleMessageLocked(c)
		}
	}
}

// SetCorpMessageRate sets one corp's own traffic rate (messages per
// conversation minute) from now on, the others' staying as they are; 0 or
// negative returns it to Options.MessageRate (none, when that is negative). A hot corp among thousands of quiet ones
// (the corps benchmark) starts this way once the receiver is up.
func (s *Sim) SetCorpMessageRate(corpID string, rate float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.corps[corpID]
	if !ok {
		return fmt.Errorf("traffic of %q: %w", corpID, ErrUnknownCorp)
	}
	c.rate = max(rate, 0)
	if rate > 0 {
		c.nextMsgAt = s.now.Add(s.gapLocked(c))
		s.scheduleMessageLocked(c)
	}
	return nil
}

// postTraffic serves POST /_sim/traffic {"rate": R}, and with "corp_id"
// sets that corp's rate only.
func (s *Sim) postTraffic(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Rate   *float64 `json:"rate"`
		CorpID string   `json:"corp_id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&body); err != nil || body.Rate == nil {
		http.Error(w, `body must be {"rate": <messages per simulated minute per corp>, "corp_id": <optional: one corp only>}`, http.StatusBadRequest)
		return
	}
	if body.CorpID != "" {
		if err := s.SetCorpMessageRate(body.CorpID, *body.Rate); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]any{"rate": *body.Rate, "corp_id": body.CorpID})
		return
	}
	s.SetMessageRate(*body.Rate)
	writeJSON(w, map[string]float64{"rate": *body.Rate})
}

// DefaultMessageText is the text POST /_sim/corps/{corp}/messages sends
// when the body names none: it holds a keyword of DemoRules, so a corp
// with those rules gets a hit, and a hit callback.
const DefaultMessageText = "加我微信，转账返现"

// postMessage serves POST /_sim/corps/{corp}/messages {"text": T}: one
// text message in corp, sent now (SendMessage), whose hits get a hit
// callback as traffic's do. It answers the stored message's msgid and
// send_time, so that a caller (the corps benchmark) can wait for exactly
// that message's events.
func (s *Sim) postMessage(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Text string `json:"text"`
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err == nil && len(data) > 0 {
		err = json.Unmarshal(data, &body)
	}
	if err != nil {
		http.Error(w, `body must be empty or {"text": "<message text>"}`, http.StatusBadRequest)
		return
	}
	if body.Text == "" {
		body.Text = DefaultMessageText
	}
	m, err := s.SendMessage(chi.URLParam(r, "corp"), Message{MsgType: MsgText, Text: body.Text})
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	writeJSON(w, map[string]any{"msg_id": m.MsgID, "send_time": m.SendTime})
}

// postRule serves POST /_sim/corps/{corp}/rules {"name": N, "words": [W…],
// "semantics": [S…]}: AddRule over HTTP, for a process that drives the
// simulator (the corps benchmark gives its hot corp a rule most messages
// hit). It answers the rule id.
func (s *Sim) postRule(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name      string   `json:"name"`
		Words     []string `json:"words"`
		Semantics []int    `json:"semantics"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&body); err != nil {
		http.Error(w, `body must be {"name": "<rule name>", "words": [...], "semantics": [...]}`, http.StatusBadRequest)
		return
	}
	id, err := s.AddRule(chi.URLParam(r, "corp"), body.Name, body.Words, body.Semantics)
	switch {
	case errors.Is(err, ErrUnknownCorp):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, map[string]string{"rule_id": id})
}

package wecomsim

import (
	"encoding/json"
	"io"
	"net/http"
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

// postTraffic serves POST /_sim/traffic {"rate": R}.
func (s *Sim) postTraffic(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Rate *float64 `json:"rate"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&body); err != nil || body.Rate == nil {
		http.Error(w, `body must be {"rate": <messages per simulated minute per corp>}`, http.StatusBadRequest)
		return
	}
	s.SetMessageRate(*body.Rate)
	writeJSON(w, map[string]float64{"rate": *body.Rate})
}

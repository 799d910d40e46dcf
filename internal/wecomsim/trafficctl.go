package wecomsim

import (
	"encoding/json"
	"io"
	"net/http"
)

// SetMessageRate changes the background traffic rate (messages per
// simulated minute per corp) from now on; 0 or negative stops it. Fault
// tests stop traffic to let the ground truth settle, then compare.
func (s *Sim) SetMessageRate(rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.opts.MessageRate
	s.opts.MessageRate = rate
	if rate > 0 && was <= 0 {
		// Resume from now, not from where traffic stopped, which would
		// release the whole pause as one burst.
		for _, c := range s.order {
			c.nextMsgAt = s.now.Add(s.interarrival())
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

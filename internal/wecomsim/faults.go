package wecomsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FaultKind is what a fault does.
type FaultKind string

// Fault kinds. Request faults apply to API calls, callback faults to
// callback deliveries.
const (
	// FaultErrcode answers Errcode (default -1, system busy).
	FaultErrcode FaultKind = "errcode"
	// FaultRateLimit answers errcode 45009.
	FaultRateLimit FaultKind = "rate_limit"
	// FaultHTTPError answers HTTP Status (default 503) with a plain body.
	FaultHTTPError FaultKind = "http_error"
	// FaultDelay answers normally after Delay.
	FaultDelay FaultKind = "delay"
	// FaultHang does not answer until the client gives up, the simulator
	// closes, or Delay (default 30s) passes; then 504.
	FaultHang FaultKind = "hang"
	// FaultExpireAccessToken expires the presented access (or suite) token
	// early, so the call gets 42001 (42009).
	FaultExpireAccessToken FaultKind = "expire_access_token"
	// FaultExpireHitToken expires the presented hit token early, so
	// get_hit_msg_list treats the call as token-less.
	FaultExpireHitToken FaultKind = "expire_hit_token"
	// FaultDropCallback does not send a callback.
	FaultDropCallback FaultKind = "drop_callback"
	// FaultDuplicateCallback sends a callback twice, same ciphertext.
	FaultDuplicateCallback FaultKind = "duplicate_callback"
)

var faultKinds = []FaultKind{FaultErrcode, FaultRateLimit, FaultHTTPError, FaultDelay, FaultHang,
	FaultExpireAccessToken, FaultExpireHitToken, FaultDropCallback, FaultDuplicateCallback}

// Fault is one injected failure. It fires on a matching call when its dice
// allow: Count > 0 fires on the next Count matching calls and is then
// removed; Rate in (0,1] fires with that probability from the seeded RNG;
// both zero fire on every matching call. Count and Rate together fire with
// probability Rate until Count firings.
type Fault struct {
	Kind FaultKind `json:"kind"`
	// API is the API name ("gettoken", "get_hit_msg_list",
	// "sync_call_program", …; an operation also matches its
	// sync_call_program calls) or the callback kind ("suite_ticket",
	// "hit_keyword", "program_notify"). Empty or "*" matches all.
	API   string  `json:"api,omitempty"`
	Count int     `json:"count,omitempty"`
	Rate  float64 `json:"rate,omitempty"`
	// Errcode for FaultErrcode; default -1.
	Errcode int `json:"errcode,omitempty"`
	// Status for FaultHTTPError; default 503.
	Status int `json:"status,omitempty"`
	// Delay for FaultDelay, and the cap of FaultHang. In JSON a Go
	// duration string such as "2s".
	Delay time.Duration `json:"-"`
}

// MarshalJSON writes Delay as a duration string.
func (f Fault) MarshalJSON() ([]byte, error) {
	type plain Fault
	j := struct {
		plain
		Delay string `json:"delay,omitempty"`
	}{plain: plain(f)}
	if f.Delay > 0 {
		j.Delay = f.Delay.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads Delay as a duration string.
func (f *Fault) UnmarshalJSON(b []byte) error {
	type plain Fault
	var j struct {
		plain
		Delay string `json:"delay"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = Fault(j.plain)
	if j.Delay != "" {
		d, err := time.ParseDuration(j.Delay)
		if err != nil {
			return fmt.Errorf("fault delay: %w", err)
		}
		f.Delay = d
	}
	return nil
}

type faultState struct {
	Fault
}

// SetFaults replaces the active faults; no argument clears them. Errors
// match ErrInvalidOption.
func (s *Sim) SetFaults(fs ...Fault) error {
	states := make([]*faultState, 0, len(fs))
	for _, f := range fs {
		if !slices.Contains(faultKinds, f.Kind) {
			return fmt.Errorf("%w: unknown fault kind %q", ErrInvalidOption, f.Kind)
		}
		if f.Count < 0 || f.Rate < 0 || f.Rate > 1 || f.Delay < 0 {
			return fmt.Errorf("%w: fault %s: count, rate or delay out of range", ErrInvalidOption, f.Kind)
		}
		if f.API == "*" {
			f.API = ""
		}
		states = append(states, &faultState{f})
	}
	s.mu.Lock()
	s.faults = states
	s.mu.Unlock()
	return nil
}

// Faults returns the active faults, Count showing what is left.
func (s *Sim) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		out = append(out, f.Fault)
	}
	return out
}

// fireLocked rolls the first fault of kind matching one of apis and
// returns it if it fires, consuming one Count.
func (s *Sim) fireLocked(kind FaultKind, apis ...string) *Fault {
	for i, f := range s.faults {
		if f.Kind != kind || f.API != "" && !slices.Contains(apis, f.API) {
			continue
		}
		if f.Rate > 0 && s.ids.Float64() >= f.Rate {
			continue
		}
		fired := f.Fault
		if f.Count > 0 {
			if f.Count--; f.Count == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return &fired
	}
	return nil
}

// requestFaults applies delay, then the first terminal request fault, for
// apis. It reports whether it answered the request.
func (s *Sim) requestFaults(w http.ResponseWriter, r *http.Request, apis ...string) bool {
	s.mu.Lock()
	delay := s.fireLocked(FaultDelay, apis...)
	var term *Fault
	for _, k := range []FaultKind{FaultHang, FaultHTTPError, FaultErrcode, FaultRateLimit} {
		if term = s.fireLocked(k, apis...); term != nil {
			break
		}
	}
	var body apiError
	if term != nil {
		switch term.Kind {
		case FaultErrcode:
			code := term.Errcode
			if code == 0 {
				code = codeBusy
			}
			body = s.errLocked(code, "system busy")
		case FaultRateLimit:
			body = s.errLocked(codeFrequency, "api freq out of limit")
		}
	}
	s.mu.Unlock()

	if delay != nil && !s.wait(r, delay.Delay) {
		return true
	}
	if term == nil {
		return false
	}
	switch term.Kind {
	case FaultHang:
		limit := term.Delay
		if limit <= 0 {
			limit = 30 * time.Second
		}
		if s.wait(r, limit) {
			http.Error(w, "gateway timeout", http.StatusGatewayTimeout)
		}
	case FaultHTTPError:
		st := term.Status
		if st == 0 {
			st = http.StatusServiceUnavailable
		}
		http.Error(w, http.StatusText(st), st)
	default:
		writeJSON(w, body)
	}
	return true
}

// wait sleeps d unless the client or the simulator goes away first; it
// reports whether the full time passed.
func (s *Sim) wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}

// ParseFault parses the command-line form of a Fault: comma-separated
// key=value pairs with keys kind, api, count, rate, errcode, status and
// delay, e.g. "kind=errcode,api=get_hit_msg_list,errcode=-1,count=3".
func ParseFault(spec string) (Fault, error) {
	var f Fault
	for kv := range strings.SplitSeq(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return Fault{}, fmt.Errorf("%w: fault %q: %q is not key=value", ErrInvalidOption, spec, kv)
		}
		var err error
		switch k {
		case "kind":
			f.Kind = FaultKind(v)
		case "api":
			f.API = v
		case "count":
			f.Count, err = strconv.Atoi(v)
		case "rate":
			f.Rate, err = strconv.ParseFloat(v, 64)
		case "errcode":
			f.Errcode, err = strconv.Atoi(v)
		case "status":
			f.Status, err = strconv.Atoi(v)
		case "delay":
			f.Delay, err = time.ParseDuration(v)
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return Fault{}, fmt.Errorf("%w: fault %q: %w", ErrInvalidOption, spec, err)
		}
	}
	if !slices.Contains(faultKinds, f.Kind) {
		return Fault{}, fmt.Errorf("%w: fault %q: unknown kind %q", ErrInvalidOption, spec, f.Kind)
	}
	return f, nil
}

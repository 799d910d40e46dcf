package wecomsim

import (
	"strings"
	"time"
)

// maxAnswers bounds the answer log: a long run keeps its first answers and
// counts the rest in AnswerLog.Dropped rather than growing without end.
const maxAnswers = 1 << 17

// Answer is how the receiver answered one callback delivery: the ground
// truth that fault tests hold the receiver's store against.
type Answer struct {
	// Kind is the callback kind (CallbackHitKeyword, ...).
	Kind string `json:"kind"`
	// Encrypt is the envelope's Encrypt field. Retries of one callback
	// repeat it, so it identifies the callback, not the delivery.
	Encrypt string `json:"encrypt"`
	// Status is the HTTP status, 0 when no answer came (refused, timed out).
	Status int `json:"status"`
	// Success marks an acknowledged delivery: 200 and, for suite
	// callbacks, a body of exactly "success".
	Success bool `json:"success"`
	// At is the real time the answer arrived.
	At time.Time `json:"at"`
}

// AnswerLog is what GET /_sim/answers shows.
type AnswerLog struct {
	Answers []Answer `json:"answers"`
	// Dropped counts answers past maxAnswers that were not kept.
	Dropped int `json:"dropped"`
}

// Answers returns every recorded answer, in arrival order.
func (s *Sim) Answers() AnswerLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	return AnswerLog{Answers: append([]Answer(nil), s.answers...), Dropped: s.answersDropped}
}

// noteAnswer records one delivery's outcome.
func (s *Sim) noteAnswer(kind, body string, status int, success bool) {
	a := Answer{Kind: kind, Encrypt: envelopeEncrypt(body), Status: status, Success: success, At: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.answers) >= maxAnswers {
		s.answersDropped++
		return
	}
	s.answers = append(s.answers, a)
}

// envelopeEncrypt extracts Encrypt from an envelope built by sendLocked,
// whose ciphertext is base64 and so never holds "]]>".
func envelopeEncrypt(body string) string {
	const open = "<Encrypt><![CDATA["
	i := strings.Index(body, open)
	if i < 0 {
		return ""
	}
	rest := body[i+len(open):]
	if j := strings.Index(rest, "]]>"); j >= 0 {
		return rest[:j]
	}
	return ""
}

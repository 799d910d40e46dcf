package wecomsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wecomhit/wecomhit/internal/crypto"
)

// Callback kinds, as counted in Stats and matched by callback faults.
const (
	CallbackSuiteTicket   = "suite_ticket"
	CallbackHitKeyword    = "hit_keyword"
	CallbackProgramNotify = "program_notify"
)

// CallbackCounts counts one kind of callback.
type CallbackCounts struct {
	// Sent counts callbacks the simulator produced, dropped ones included.
	Sent int `json:"sent"`
	// Attempts counts HTTP deliveries, retries and duplicates included.
	Attempts int `json:"attempts"`
	// Delivered counts acknowledged deliveries.
	Delivered int `json:"delivered"`
	// Failed counts callbacks given up on after all retries.
	Failed int `json:"failed"`
	// Dropped and Duplicated count callback faults that fired.
	Dropped    int `json:"dropped"`
	Duplicated int `json:"duplicated"`
}

// CallbackStats returns the counts per callback kind.
func (s *Sim) CallbackStats() map[string]CallbackCounts {
	return s.Stats().Callbacks
}

func cdata(v string) string {
	return "<![CDATA[" + strings.ReplaceAll(v, "]]>", "]]]]><![CDATA[>") + "]]>"
}

func (s *Sim) sendSuiteTicketLocked(ticket string) {
	if s.archiveCrypt == nil {
		return
	}
	a := s.opts.Archive
	plain := fmt.Sprintf("<xml><SuiteId>%s</SuiteId><InfoType>%s</InfoType><TimeStamp>%d</TimeStamp><SuiteTicket>%s</SuiteTicket></xml>",
		cdata(a.SuiteID), cdata("suite_ticket"), s.now.Unix(), cdata(ticket))
	s.sendLocked(CallbackSuiteTicket, s.archiveCrypt, a.CallbackURL, a.SuiteID, plain, true)
}

func (s *Sim) sendHitKeywordLocked(c *corpState, token string) {
	a := s.opts.Archive
	plain := fmt.Sprintf("<xml><SuiteId>%s</SuiteId><AuthCorpId>%s</AuthCorpId><InfoType>%s</InfoType><Token>%s</Token><TimeStamp>%d</TimeStamp></xml>",
		cdata(a.SuiteID), cdata(c.id), cdata("hit_keyword"), cdata(token), s.now.Unix())
	s.sendLocked(CallbackHitKeyword, s.archiveCrypt, a.CallbackURL, a.SuiteID, plain, true)
}

func (s *Sim) sendProgramNotifyLocked(c *corpState, notifyID string) {
	plain := fmt.Sprintf("<xml><ToUserName>%s</ToUserName><FromUserName>%s</FromUserName><CreateTime>%d</CreateTime><MsgType>%s</MsgType><Event>%s</Event><NotifyId>%s</NotifyId><NotifyScene>1</NotifyScene></xml>",
		cdata(c.id), cdata("sys"), s.now.Unix(), cdata("event"), cdata("program_notify"), cdata(notifyID))
	s.sendLocked(CallbackProgramNotify, s.zoneCrypt, s.opts.Zone.CallbackURL, c.id, plain, false)
}

// sendLocked encrypts and signs plain as WeCom does and delivers it in the
// background. Suite callbacks (wantSuccess) succeed only on a body of
// exactly "success"; app callbacks on HTTP 200. A failed delivery is re-sent
// with the same ciphertext up to CallbackRetries times.
func (s *Sim) sendLocked(kind string, cr *crypto.Crypter, target, toUser, plain string, wantSuccess bool) {
	if s.closed || cr == nil || target == "" {
		return
	}
	st := s.cbStats[kind]
	defer func() { s.cbStats[kind] = st }()
	st.Sent++
	if s.fireLocked(FaultDropCallback, kind) != nil {
		st.Dropped++
		return
	}
	copies := 1
	if s.fireLocked(FaultDuplicateCallback, kind) != nil {
		copies = 2
		st.Duplicated++
	}
	ts := strconv.FormatInt(s.now.Unix(), 10)
	nonce := strconv.FormatUint(uint64(s.ids.Uint32()), 10)
	enc, sig, err := cr.Seal(plain, ts, nonce)
	if err != nil {
		s.log.Error().Err(err).Str("kind", kind).Msg("seal callback")
		return
	}
	u, err := url.Parse(target)
	if err != nil {
		s.log.Error().Err(err).Str("kind", kind).Msg("callback URL")
		return
	}
	q := u.Query()
	q.Set("msg_signature", sig)
	q.Set("timestamp", ts)
	q.Set("nonce", nonce)
	u.RawQuery = q.Encode()
	// Suite (指令回调) envelopes carry an empty AgentID (doc 97172); the
	// simulated zone app has no agent id either.
	body := "<xml><ToUserName>" + cdata(toUser) + "</ToUserName><Encrypt>" + cdata(enc) +
		"</Encrypt><AgentID>" + cdata("") + "</AgentID></xml>"
	for range copies {
		s.wg.Add(1)
		go s.deliver(kind, u.String(), target, body, wantSuccess)
	}
}

func (s *Sim) deliver(kind, u, target, body string, wantSuccess bool) {
	defer s.wg.Done()
	log := s.log.With().Str("kind", kind).Str("url", target).Logger()
	for attempt := 0; attempt <= s.opts.CallbackRetries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(s.opts.CallbackRetryInterval)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		err := s.post(kind, u, body, wantSuccess)
		s.mu.Lock()
		st := s.cbStats[kind]
		st.Attempts++
		if err == nil {
			st.Delivered++
		}
		s.cbStats[kind] = st
		s.mu.Unlock()
		if err == nil {
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		log.Warn().Err(err).Int("attempt", attempt+1).Msg("callback not acknowledged")
	}
	s.mu.Lock()
	st := s.cbStats[kind]
	st.Failed++
	s.cbStats[kind] = st
	s.mu.Unlock()
	log.Error().Msg("callback given up after retries")
}

func (s *Sim) post(kind, u, body string, wantSuccess bool) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.CallbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("callback request: %w", err)
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	resp, err := s.client.Do(req)
	if err != nil {
		// The *url.Error repeats the signed URL; the logger has the target.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		s.noteAnswer(kind, body, 0, false)
		return fmt.Errorf("callback post: %w", err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		s.noteAnswer(kind, body, resp.StatusCode, false)
		return fmt.Errorf("callback reply: %w", err)
	}
	s.noteAnswer(kind, body, resp.StatusCode,
		resp.StatusCode == http.StatusOK && (!wantSuccess || string(reply) == "success"))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback answered HTTP %d", resp.StatusCode)
	}
	if wantSuccess && string(reply) != "success" {
		return fmt.Errorf("callback answered %d bytes, not \"success\"", len(reply))
	}
	return nil
}

package wecomsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"sort"
	"time"
)

// Limits of get_hit_msg_list (protocol §3.1).
const (
	hitWindow      = 5 * 24 * time.Hour
	hitListDefault = 200
	hitListMax     = 1000
	maxCursorBytes = 64
	maxTokenBytes  = 128
)

type hitToken struct {
	corpID  string
	expires time.Time
}

// notify is a program_notify NotifyId: it stands for a hit token inside
// the zone, as the program would hold it.
type notify struct {
	token   string
	expires time.Time
}

// newHitTokenLocked mints a hit token for c, valid HitTokenTTL.
func (s *Sim) newHitTokenLocked(c *corpState) string {
	v := s.randToken(64)
	s.hitTokens[v] = &hitToken{corpID: c.id, expires: s.now.Add(s.opts.HitTokenTTL)}
	return v
}

// IssueHitToken mints a hit token for corpID as if sent in a hit_keyword
// callback, for tests that do not run a callback receiver.
func (s *Sim) IssueHitToken(corpID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.corps[corpID]
	if !ok {
		return "", fmt.Errorf("issue hit token for %q: %w", corpID, ErrUnknownCorp)
	}
	return s.newHitTokenLocked(c), nil
}

// hitTokenValidLocked reports whether v is a live hit token of corp.
func (s *Sim) hitTokenValidLocked(v, corpID string) bool {
	t, ok := s.hitTokens[v]
	return ok && t.corpID == corpID && s.now.Before(t.expires)
}

// Cursor kinds, so that a cursor of one list is refused by another.
const (
	cursorHits   = 'h'
	cursorSearch = 's'
	cursorRules  = 'r'
)

// makeCursor encodes a position as base64url(seq ‖ MAC): opaque, 24 bytes,
// and unforgeable, so a client cannot invent or edit one meaningfully.
func (s *Sim) makeCursor(corpID string, kind byte, seq int64) string {
	var b [18]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seq))
	copy(b[8:], s.cursorMAC(corpID, kind, b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Sim) cursorMAC(corpID string, kind byte, seq []byte) []byte {
	m := hmac.New(sha256.New, s.cursorKey)
	m.Write([]byte(corpID))
	m.Write([]byte{0, kind})
	m.Write(seq)
	return m.Sum(nil)[:10]
}

// cursorLocked decodes a cursor to the sequence number after which to
// continue; "" is 0. A cursor that is too long, forged or from another list
// or corp is 40058 (the real code is undocumented).
func (s *Sim) cursorLocked(corpID string, kind byte, v string) (int64, any) {
	if v == "" {
		return 0, nil
	}
	if len(v) > maxCursorBytes {
		return 0, s.invalidLocked("cursor longer than %d bytes", maxCursorBytes)
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) != 18 || !hmac.Equal(b[8:], s.cursorMAC(corpID, kind, b[:8])) {
		return 0, s.invalidLocked("invalid cursor")
	}
	return int64(binary.BigEndian.Uint64(b[:8])), nil
}

type msgDetail struct {
	Sender             Party   `json:"sender"`
	ReceiverList       []Party `json:"receiver_list"`
	ChatID             string  `json:"chatid"`
	SendTime           int64   `json:"send_time"`
	MsgType            int     `json:"msgtype"`
	ServiceEncryptInfo struct {
		EncryptedSecretKey string `json:"encrypted_secret_key"`
		PublicKeyVer       int    `json:"public_key_ver"`
	} `json:"service_encrypt_info"`
}

type hitMsg struct {
	MsgID       string     `json:"msgid"`
	MsgDetail   *msgDetail `json:"msg_detail,omitempty"`
	HitRuleList []RuleHit  `json:"hit_rule_list"`
}

// getHitMsgList serves the corp's hits of the last 5 days, oldest first
// from the cursor, one msg_list entry per message.
func (s *Sim) getHitMsgList(cl *call) any {
	var req struct {
		Token      string `json:"token"`
		Cursor     string `json:"cursor"`
		Limit      int    `json:"limit"`
		NeedDetail int    `json:"need_detail"`
		BeginTime  int64  `json:"begin_time"`
	}
	if e := s.decodeLocked(cl, &req); e != nil {
		return e
	}
	c := cl.corp
	if len(req.Token) > maxTokenBytes {
		return s.invalidLocked("token longer than %d bytes", maxTokenBytes)
	}
	if req.NeedDetail != 0 && req.NeedDetail != 1 {
		return s.invalidLocked("need_detail must be 0 or 1")
	}
	if req.BeginTime < 0 {
		return s.invalidLocked("begin_time must not be negative")
	}
	limit, e := s.limitLocked(req.Limit, hitListDefault, hitListMax)
	if e != nil {
		return e
	}
	after, e := s.cursorLocked(c.id, cursorHits, req.Cursor)
	if e != nil {
		return e
	}

	if e := s.admitHitListLocked(cl, req.Token); e != nil {
		return e
	}

	cut := s.now.Add(-hitWindow).Unix()
	from := cut
	if req.Cursor == "" && req.BeginTime > cut {
		// begin_time re-pulls from near that time when the cursor is lost.
		from = req.BeginTime
	}
	start := sort.Search(len(c.hits), func(i int) bool { return c.hits[i].seq > after })
	resp := struct {
		apiError
		HasMore    int      `json:"has_more"`
		NextCursor string   `json:"next_cursor"`
		MsgList    []hitMsg `json:"msg_list"`
	}{apiError: okBody, NextCursor: req.Cursor, MsgList: []hitMsg{}}
	for _, h := range c.hits[start:] {
		if h.msg.SendTime < from {
			continue
		}
		if len(resp.MsgList) == limit {
			resp.HasMore = 1
			break
		}
		hm := hitMsg{MsgID: h.msg.MsgID, HitRuleList: h.rules}
		if req.NeedDetail == 1 {
			hm.MsgDetail = hitDetail(h.msg)
		}
		resp.MsgList = append(resp.MsgList, hm)
		resp.NextCursor = s.makeCursor(c.id, cursorHits, h.seq)
	}
	return resp
}

// admitHitListLocked lets a get_hit_msg_list call of cl through: freely
// with a live hit token (the call's own, or the one behind the notify id
// of a zone call), and without one at most TokenlessLimit times a minute
// per corp: WeCom holds calls without a token to a strict limit. The
// FaultExpireHitToken fault ends a live token on the spot, as if its ten
// minutes were up.
func (s *Sim) admitHitListLocked(cl *call, token string) any {
	c := cl.corp
	valid := s.hitTokenValidLocked(token, c.id)
	if valid && s.fireLocked(FaultExpireHitToken, cl.apis...) != nil {
		s.hitTokens[token].expires = s.now
		valid = false
	}
	if valid || s.hitTokenValidLocked(cl.notifyToken, c.id) {
		return nil
	}
	cut := s.now.Add(-time.Minute)
	i := sort.Search(len(c.tokenless), func(i int) bool { return c.tokenless[i].After(cut) })
	c.tokenless = c.tokenless[i:]
	if len(c.tokenless) >= s.opts.TokenlessLimit {
		return s.errLocked(codeFrequency, "api freq out of limit")
	}
	c.tokenless = append(c.tokenless, s.now)
	return nil
}

// hitDetail is the msg_detail of m that need_detail asks for: who, where,
// when and what type, and the key its content is sealed with, never the
// content itself.
func hitDetail(m *Message) *msgDetail {
	d := &msgDetail{Sender: m.Sender, ReceiverList: m.Receivers, ChatID: m.ChatID,
		SendTime: m.SendTime, MsgType: m.MsgType}
	d.ServiceEncryptInfo.EncryptedSecretKey = m.EncryptedSecretKey
	d.ServiceEncryptInfo.PublicKeyVer = m.PublicKeyVer
	return d
}

// notifyLocked sends the coalesced hit callback of c: hit_keyword with a
// fresh token to archive corps, program_notify with a fresh notify id
// (mapped to a fresh token) to the zone corp.
func (s *Sim) notifyLocked(c *corpState) {
	c.notifyPending = false
	c.lastNotify = s.now
	if c.archive && s.archiveCrypt != nil {
		s.sendHitKeywordLocked(c, s.newHitTokenLocked(c))
	}
	if c.zone && s.zoneCrypt != nil {
		id := "ntf-" + s.randToken(40)
		tok := s.newHitTokenLocked(c)
		s.notifies[id] = &notify{token: tok, expires: s.now.Add(s.opts.HitTokenTTL)}
		s.sendProgramNotifyLocked(c, id)
	}
}

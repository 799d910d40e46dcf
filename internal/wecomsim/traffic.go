package wecomsim

import (
	"encoding/base64"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Party types of sender and receivers (doc 99694).
const (
	PartyEmployee = 1
	PartyCustomer = 2
	PartyRobot    = 3
)

// Message types of msg_detail.msgtype. 1, 4, 5, 8, 18, 20 and 23 are
// documented; 2 appears in an example; the others follow WeCom's archive
// numbering and are a guess. A recall has no type of its own here: a
// recalled message keeps its type and has Recalled set.
const (
	MsgText        = 1
	MsgImage       = 2
	MsgLink        = 4
	MsgMiniProgram = 5
	MsgVoice       = 6
	MsgFile        = 8
	MsgCard        = 9
	MsgRedPacket   = 13
	MsgDoc         = 18
	MsgMixed       = 20
	MsgWeDriveFile = 23
)

// searchable are the types search_msg looks into (doc 99818).
var searchable = map[int]bool{MsgText: true, MsgLink: true, MsgMiniProgram: true,
	MsgFile: true, MsgDoc: true, MsgMixed: true, MsgWeDriveFile: true}

// Party is a sender or receiver: Type is PartyEmployee (ID is an
// open_userid), PartyCustomer (external_userid, wm…) or PartyRobot.
type Party struct {
	Type int    `json:"type"`
	ID   string `json:"id"`
}

// Message is one simulated message. The fields up to MsgType are what WeCom
// returns as msg_detail; the rest are the simulator's view of the content.
type Message struct {
	MsgID     string  `json:"msgid"`
	CorpID    string  `json:"corp_id"`
	Sender    Party   `json:"sender"`
	Receivers []Party `json:"receiver_list"`
	// ChatID is the group's chat id (wr…), empty for a single chat.
	ChatID   string `json:"chatid"`
	SendTime int64  `json:"send_time"`
	MsgType  int    `json:"msgtype"`
	// Text is the searchable text: the text body, the text part of a mixed
	// message, or the title or name of a link, mini program, file or doc.
	Text string `json:"text,omitempty"`
	// QRCode marks an image that contains a QR code.
	QRCode bool `json:"qrcode,omitempty"`
	// Recalled marks a message its sender recalled.
	Recalled bool `json:"recalled,omitempty"`
	// Welcome marks a customer welcome message (客户欢迎语).
	Welcome bool `json:"welcome,omitempty"`
	// EncryptedSecretKey and PublicKeyVer fill service_encrypt_info. The key
	// is random bytes, not a ciphertext: the simulator has no set_public_key.
	EncryptedSecretKey string `json:"encrypted_secret_key"`
	PublicKeyVer       int    `json:"public_key_ver"`

	seq int64
}

type employee struct {
	id   string
	dept int64
}

type group struct {
	id      string
	members []Party
}

// corpState is everything the simulator holds for one corp.
type corpState struct {
	id      string
	archive bool    // authorized the archive suite
	zone    bool    // is the zone app's corp
	rate    float64 // own message rate (install.go); 0: Options.MessageRate

	employees []employee
	customers []string
	groups    []group
	dept      map[string]int64
	seenChats map[string]bool

	rules   []*rule // in creation order
	ruleSeq int64

	msgSeq   int64
	messages []*Message // by seq; pruned after 31 days
	hits     []*hitEntry

	nextMsgAt     time.Time
	notifyPending bool
	notifyAt      time.Time
	lastNotify    time.Time
	tokenless     []time.Time // get_hit_msg_list calls without a valid token
}

func (s *Sim) addCorp(id string) *corpState {
	if c, ok := s.corps[id]; ok {
		return c
	}
	r := s.traffic
	c := &corpState{id: id, dept: map[string]int64{}, seenChats: map[string]bool{}}
	for range s.opts.Employees {
		e := employee{id: "wo" + s.alnum(30), dept: 1 + r.Int64N(3)}
		c.employees = append(c.employees, e)
		c.dept[e.id] = e.dept
	}
	for range s.opts.Customers {
		c.customers = append(c.customers, "wm"+s.alnum(30))
	}
	for range s.opts.Groups {
		g := group{id: "wr" + s.alnum(30)}
		for _, i := range r.Perm(len(c.employees))[:min(2, len(c.employees))] {
			g.members = append(g.members, Party{PartyEmployee, c.employees[i].id})
		}
		for _, i := range r.Perm(len(c.customers))[:min(3, len(c.customers))] {
			g.members = append(g.members, Party{PartyCustomer, c.customers[i]})
		}
		c.groups = append(c.groups, g)
	}
	c.nextMsgAt = s.opts.Start.Add(s.interarrival())
	s.corps[id] = c
	s.order = append(s.order, c)
	return c
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// alnum draws from the traffic stream: ids of the population are part of
// the reproducible traffic.
func (s *Sim) alnum(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[s.traffic.IntN(len(alphabet))]
	}
	return string(b)
}

// interarrival draws an exponential gap for Poisson traffic at MessageRate.
func (s *Sim) interarrival() time.Duration {
	if s.opts.MessageRate <= 0 {
		return 0
	}
	mean := float64(time.Minute) / s.opts.MessageRate
	d := time.Duration(-math.Log(1-s.traffic.Float64()) * mean)
	// The floor only keeps the event loop moving; a floor of a second
	// would cap any rate at 60 a minute whatever MessageRate says.
	return s.conversation(max(d, time.Millisecond))
}

var (
	phrases = []string{
		"你好，请问订单什么时候发货？", "Thanks for the quick reply.", "合同我已经看过了，没有问题。",
		"Can we meet tomorrow at 10?", "价格还能再优惠一点吗", "好的，收到", "请把报价单发我一下",
		"我们周五前确认", "The invoice is attached.", "稍等，我问一下同事", "明天上午有空吗",
		"这个型号还有库存吗", "Please check the delivery address.", "售后电话是多少",
	}
	fileNames = []string{"报价单_v2.pdf", "contract-2024.docx", "产品手册.pdf", "invoice_0042.xlsx"}
	linkTitle = []string{"新品发布会回顾", "Pricing overview", "售后服务说明", "Customer story"}
	miniTitle = []string{"订单查询", "会员中心", "预约到店"}
	docTitle  = []string{"项目计划", "Meeting notes", "客户需求清单"}
	names     = []string{"张伟", "李娜", "Wang Fang", "Chen Jie"}
	welcome   = "您好，我是您的专属顾问，很高兴为您服务！"
)

// typeWeights is the message type mix of generated traffic.
var typeWeights = []struct{ t, w int }{
	{MsgText, 50}, {MsgImage, 10}, {MsgLink, 6}, {MsgMiniProgram, 4}, {MsgVoice, 5},
	{MsgFile, 6}, {MsgCard, 3}, {MsgRedPacket, 3}, {MsgDoc, 4}, {MsgMixed, 5}, {MsgWeDriveFile, 4},
}

// generateLocked draws one message at the current time: a chat, a sender,
// a type and content, the content sometimes carrying the corp's current
// rule keywords and the key behaviours the matcher detects.
func (s *Sim) generateLocked(c *corpState) *Message {
	r := s.traffic
	m := &Message{CorpID: c.id, SendTime: s.now.Unix()}
	var chatKey string
	if len(c.groups) > 0 && r.Float64() < 0.35 {
		g := c.groups[r.IntN(len(c.groups))]
		i := r.IntN(len(g.members))
		m.Sender, m.ChatID, chatKey = g.members[i], g.id, g.id
		for j, p := range g.members {
			if j != i {
				m.Receivers = append(m.Receivers, p)
			}
		}
	} else {
		e := Party{PartyEmployee, c.employees[r.IntN(len(c.employees))].id}
		cu := Party{PartyCustomer, c.customers[r.IntN(len(c.customers))]}
		chatKey = e.ID + "|" + cu.ID
		if r.IntN(2) == 0 {
			m.Sender, m.Receivers = e, []Party{cu}
		} else {
			m.Sender, m.Receivers = cu, []Party{e}
		}
	}
	first := !c.seenChats[chatKey]
	c.seenChats[chatKey] = true
	if first && m.ChatID == "" && m.Sender.Type == PartyEmployee && r.IntN(2) == 0 {
		m.MsgType, m.Text, m.Welcome = MsgText, welcome, true
	} else {
		total := 0
		for _, tw := range typeWeights {
			total += tw.w
		}
		n := r.IntN(total)
		for _, tw := range typeWeights {
			if n -= tw.w; n < 0 {
				m.MsgType = tw.t
				break
			}
		}
		s.fillContent(c, m)
	}
	m.Recalled = r.Float64() < 0.03
	return m
}

func pick(s *Sim, list []string) string { return list[s.traffic.IntN(len(list))] }

func (s *Sim) fillContent(c *corpState, m *Message) {
	r := s.traffic
	switch m.MsgType {
	case MsgText, MsgMixed:
		m.Text = s.sentence(c)
	case MsgImage:
		m.QRCode = r.Float64() < 0.3
	case MsgLink:
		m.Text = pick(s, linkTitle) + " https://example.com/a/" + s.alnum(6)
	case MsgMiniProgram:
		m.Text = pick(s, miniTitle)
	case MsgFile, MsgWeDriveFile:
		m.Text = pick(s, fileNames)
	case MsgDoc:
		m.Text = pick(s, docTitle)
	case MsgCard:
		m.Text = pick(s, names)
	case MsgRedPacket:
		m.Text = "恭喜发财，大吉大利"
	}
}

// sentence builds a text body from a phrase, sometimes adding a rule keyword
// (now and then in upper case, to exercise is_case_sensitive) and the
// patterns behind semantics 2, 3, 7, 8 and 10.
func (s *Sim) sentence(c *corpState) string {
	r := s.traffic
	parts := []string{pick(s, phrases)}
	var words []string
	for _, ru := range c.rules {
		words = append(words, ru.Words...)
	}
	if len(words) > 0 && r.Float64() < 0.3 {
		w := words[r.IntN(len(words))]
		if r.Float64() < 0.3 {
			w = strings.ToUpper(w)
		}
		parts = append(parts, w)
	}
	add := func(p float64, f func() string) {
		if r.Float64() < p {
			parts = append(parts, f())
		}
	}
	add(0.08, s.mobile)
	add(0.05, func() string { return strings.ToLower(s.alnum(6)) + "@example.com" })
	add(0.04, s.bankCard)
	add(0.03, s.idCard)
	add(0.05, func() string { return "https://example.com/p/" + s.alnum(8) })
	return strings.Join(parts, " ")
}

func (s *Sim) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + s.traffic.IntN(10))
	}
	return string(b)
}

func (s *Sim) mobile() string {
	return "1" + string(byte('3'+s.traffic.IntN(7))) + s.digits(9)
}

func (s *Sim) bankCard() string {
	body := "622202" + s.digits(9+s.traffic.IntN(4)) // 15..18 digits
	return body + string(luhnDigit(body))
}

func (s *Sim) idCard() string {
	body := fmt.Sprintf("110101%04d%02d%02d%s", 1960+s.traffic.IntN(45),
		1+s.traffic.IntN(12), 1+s.traffic.IntN(28), s.digits(3))
	return body + string(idCheck(body))
}

// recordLocked stores a message, matches it against the corp's rules and
// records the hits, scheduling a coalesced hit callback.
func (s *Sim) recordLocked(c *corpState, m *Message) {
	c.msgSeq++
	m.seq = c.msgSeq
	if m.MsgID == "" {
		b := make([]byte, 18)
		for i := range b {
			b[i] = byte(s.traffic.Uint32())
		}
		m.MsgID = base64.StdEncoding.EncodeToString(b)
	}
	if m.EncryptedSecretKey == "" {
		b := make([]byte, 128)
		for i := range b {
			b[i] = byte(s.traffic.Uint32())
		}
		m.EncryptedSecretKey, m.PublicKeyVer = base64.StdEncoding.EncodeToString(b), 1
	}
	c.messages = append(c.messages, m)

	f := detect(m)
	var rh []RuleHit
	for _, ru := range c.rules {
		if h, ok := ru.match(m, f, c.dept); ok {
			rh = append(rh, h)
		}
	}
	if len(rh) == 0 {
		return
	}
	c.hits = append(c.hits, &hitEntry{seq: m.seq, msg: m, rules: rh})
	for _, h := range rh {
		s.hits = append(s.hits, Hit{CorpID: c.id, MsgID: m.MsgID, RuleID: h.RuleID,
			HasHitKeyword: h.HasHitKeyword, SemanticsList: h.SemanticsList, Message: *m})
	}
	if !c.notifyPending {
		c.notifyPending = true
		c.notifyAt = s.now
		if next := c.lastNotify.Add(s.conversation(s.opts.HitNotifyInterval)); !c.lastNotify.IsZero() && next.After(s.now) {
			c.notifyAt = next
		}
		s.scheduleNotifyLocked(c)
	}
}

// pruneLocked drops messages older than the longest search window and hit
// entries older than get_hit_msg_list's window. Ground truth is kept.
func (s *Sim) pruneLocked() {
	if s.now.Sub(s.lastPrune) < time.Hour {
		return
	}
	s.lastPrune = s.now
	// Expired tokens are kept a day so that late users get "expired", not
	// "invalid".
	tokCut := s.now.Add(-24 * time.Hour)
	for k, t := range s.tokens {
		if t.expires.Before(tokCut) {
			delete(s.tokens, k)
		}
	}
	for k, t := range s.hitTokens {
		if t.expires.Before(tokCut) {
			delete(s.hitTokens, k)
		}
	}
	for k, n := range s.notifies {
		if n.expires.Before(tokCut) {
			delete(s.notifies, k)
		}
	}
	msgCut := s.now.Add(-32 * 24 * time.Hour).Unix()
	hitCut := s.now.Add(-hitWindow - time.Hour).Unix()
	for _, c := range s.order {
		i := sort.Search(len(c.messages), func(i int) bool { return c.messages[i].SendTime >= msgCut })
		c.messages = c.messages[i:]
		j := sort.Search(len(c.hits), func(i int) bool { return c.hits[i].msg.SendTime >= hitCut })
		c.hits = c.hits[j:]
	}
}

// GenerateMessages draws n messages for corpID at the current simulated
// time, as background traffic would, records their hits and sends the hit
// callback if one is due. It returns copies of the messages.
func (s *Sim) GenerateMessages(corpID string, n int) ([]Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.corps[corpID]
	if !ok {
		return nil, fmt.Errorf("generate messages for %q: %w", corpID, ErrUnknownCorp)
	}
	out := make([]Message, 0, n)
	for range n {
		m := s.generateLocked(c)
		s.recordLocked(c, m)
		out = append(out, *m)
	}
	s.runUntilLocked(s.now)
	return out, nil
}

// SendMessage records m as sent now in corpID and matches it like any
// message. SendTime is always the current simulated time, so that messages
// stay in time order; use Advance to place messages in time. Empty fields
// are filled: MsgID, MsgType (text), Sender (the corp's first employee) and
// Receivers (its first customer, for a single chat). It returns the stored
// copy.
func (s *Sim) SendMessage(corpID string, m Message) (Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.corps[corpID]
	if !ok {
		return Message{}, fmt.Errorf("send message in %q: %w", corpID, ErrUnknownCorp)
	}
	m.CorpID = c.id
	m.SendTime = s.now.Unix()
	if m.MsgType == 0 {
		m.MsgType = MsgText
	}
	if m.Sender.ID == "" {
		m.Sender = Party{PartyEmployee, c.employees[0].id}
	}
	if len(m.Receivers) == 0 && m.ChatID == "" {
		other := Party{PartyCustomer, c.customers[0]}
		if m.Sender.Type == PartyCustomer {
			other = Party{PartyEmployee, c.employees[0].id}
		}
		m.Receivers = []Party{other}
	}
	m.Receivers = append([]Party(nil), m.Receivers...)
	stored := m
	s.recordLocked(c, &stored)
	s.runUntilLocked(s.now)
	return stored, nil
}

// Population describes a corp's simulated people and groups.
type Population struct {
	// Employees are open_userids; Departments[i] is Employees[i]'s department.
	Employees   []string
	Departments []int64
	// Customers are external_userids (wm…).
	Customers []string
	// Groups are chat ids (wr…) with their members.
	Groups map[string][]Party
}

// Population returns corpID's people and groups, for building rules and
// search filters in tests.
func (s *Sim) Population(corpID string) (Population, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.corps[corpID]
	if !ok {
		return Population{}, fmt.Errorf("population of %q: %w", corpID, ErrUnknownCorp)
	}
	p := Population{Customers: append([]string(nil), c.customers...), Groups: map[string][]Party{}}
	for _, e := range c.employees {
		p.Employees = append(p.Employees, e.id)
		p.Departments = append(p.Departments, e.dept)
	}
	for _, g := range c.groups {
		p.Groups[g.id] = append([]Party(nil), g.members...)
	}
	return p, nil
}

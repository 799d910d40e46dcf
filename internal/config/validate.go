package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalid matches every *FieldError.
var ErrInvalid = errors.New("invalid configuration")

// FieldError is one configuration problem: the YAML path of the value and
// the rule it breaks. It never holds a value.
type FieldError struct {
	// Path is the YAML path, e.g. "apps[1].corps[0].permanent_code".
	Path string
	// Rule says what is wrong, e.g. "required when mode is archive".
	Rule string
	// Line is the line of the value in the file, or of the nearest
	// enclosing key the file has (for a missing key); 0 when unknown, as
	// for a Config that was not parsed. Error appends it.
	Line int
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return e.Path + ": " + e.Rule + " (line " + strconv.Itoa(e.Line) + ")"
	}
	return e.Path + ": " + e.Rule
}

// Is reports whether target is ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

var (
	appNameRE       = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	subjectPrefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// Validate checks c against every rule and returns all violations, joined,
// each a *FieldError. It expects defaults applied, as Load and Parse do.
func (c *Config) Validate() error {
	v := &validator{}
	c.HTTP.validate(v)
	c.Admin.validate(v)
	c.NATS.validate(v)
	if c.HTTP.TimestampWindow > 0 && c.NATS.DuplicateWindow < c.HTTP.TimestampWindow {
		// Otherwise a captured POST replayed after the dedup window but
		// inside the replay guard's window is stored a second time.
		v.add("nats.duplicate_window", "must be at least http.timestamp_window")
	}
	c.Fetch.validate(v)
	c.Log.validate(v)
	v.check(c.MemoryLimitBytes >= 0, "memory_limit_bytes", "must not be negative")
	c.Corps.validate(v)
	if c.NATS.URL == "" {
		// The server reserves each stream's and bucket's limit when it is
		// created, and refuses one that does not fit: say so here rather
		// than at start-up.
		v.check(c.NATS.MaxStoreBytes >= c.ReservedBytes(), "nats.max_store_bytes",
			fmt.Sprintf("must be at least the sum of the stream and bucket limits (%d)", c.ReservedBytes()))
	}
	if len(c.Apps) == 0 {
		v.add("apps", "at least one app is required")
	}
	seen := make(map[string]bool, len(c.Apps))
	for i := range c.Apps {
		a := &c.Apps[i]
		p := fmt.Sprintf("apps[%d]", i)
		a.validate(v, p, c.Corps.Enabled())
		if a.Name != "" {
			if seen[a.Name] {
				v.add(p+".name", "must be unique")
			}
			seen[a.Name] = true
		}
	}
	c.validateSamples(v)
	c.nameEmptyVars(v.errs)
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) add(path, rule string) {
	v.errs = append(v.errs, &FieldError{Path: path, Rule: rule})
}

// check adds rule at path unless ok.
func (v *validator) check(ok bool, path, rule string) {
	if !ok {
		v.add(path, rule)
	}
}

func (h *HTTP) validate(v *validator) {
	v.check(isHostPort(h.Listen), "http.listen", "must be host:port")
	v.check(h.MaxBodyBytes >= 1024 && h.MaxBodyBytes <= 16<<20,
		"http.max_body_bytes", "must be between 1024 and 16777216")
	// WeCom gives up after 5 s; the 503 must reach it before then.
	v.check(h.AckTimeout > 0 && h.AckTimeout < 5*time.Second,
		"http.ack_timeout", "must be greater than 0 and less than 5s")
	v.check(h.TimestampWindow >= 0, "http.timestamp_window", "must not be negative")
	v.check(h.ShutdownTimeout > 0, "http.shutdown_timeout", "must be greater than 0")
	v.check(h.ReadyGrace >= 0 && h.ReadyGrace < h.ShutdownTimeout, "http.ready_grace", "must be at least 0s and less than shutdown_timeout")
	v.check(h.MaxConnections >= 1 && h.MaxConnections <= 1<<20, "http.max_connections", "must be between 1 and 1048576")
	v.check(h.IdleTimeout >= time.Second, "http.idle_timeout", "must be at least 1s")
}

// minAdminToken is the shortest admin token accepted: a guessable bearer
// token would open rules and search to anyone who reaches the listener.
const minAdminToken = 16

func (a *Admin) validate(v *validator) {
	v.check(a.Listen == "" || isHostPort(a.Listen), "admin.listen", "must be host:port, or empty to turn the admin listener off")
	v.check(a.Token == "" || utf8.RuneCountInString(string(a.Token)) >= minAdminToken,
		"admin.token", fmt.Sprintf("must be at least %d characters", minAdminToken))
	v.check(a.MaxConnections >= 1 && a.MaxConnections <= 1<<20, "admin.max_connections", "must be between 1 and 1048576")
	for i, h := range a.AllowedHosts {
		// A host name or IP literal as Host carries it, without the port.
		v.check(h != "" && !strings.ContainsAny(h, "/ \t") && !isHostPort(h),
			fmt.Sprintf("admin.allowed_hosts[%d]", i), "must be a host name or IP address without port")
	}
}

func (n *NATS) validate(v *validator) {
	embedded := n.URL == ""
	if !embedded {
		v.check(validNATSURLs(n.URL), "nats.url", "must be a comma-separated list of URLs with a host")
		v.check(n.Listen == "", "nats.listen", "must be empty when url is set")
		v.check(!n.SyncAlways, "nats.sync_always", "must be false when url is set")
		v.check(n.CredentialsDir == "", "nats.credentials_dir", "only valid when url is empty")
	} else {
		v.check(n.StoreDir != "", "nats.store_dir", "required when url is empty")
		v.check(n.Listen == "" || isHostPort(n.Listen), "nats.listen", "must be host:port")
		v.check(n.CredentialsFile == "", "nats.credentials_file", "only valid when url is set")
		v.check(n.TLSCAFile == "", "nats.tls_ca_file", "only valid when url is set")
	}
	v.check(subjectPrefixRE.MatchString(n.SubjectPrefix), "nats.subject_prefix",
		"must be tokens of letters, digits, '_' or '-' separated by '.'")
	switch {
	case n.Replicas < 1 || n.Replicas > 5:
		v.add("nats.replicas", "must be between 1 and 5")
	case embedded && n.Replicas > 1:
		// A single embedded server cannot hold more than one replica.
		v.add("nats.replicas", "must be 1 when url is empty")
	}
	v.check(n.TLSCertFile != "" || n.TLSKeyFile == "", "nats.tls_cert_file", "required when tls_key_file is set")
	v.check(n.TLSKeyFile != "" || n.TLSCertFile == "", "nats.tls_key_file", "required when tls_cert_file is set")
	v.check(n.ConnectTimeout > 0, "nats.connect_timeout", "must be greater than 0")
	v.check(n.SetupTimeout >= n.ConnectTimeout, "nats.setup_timeout", "must be at least connect_timeout")
	v.check(n.PingInterval >= 100*time.Millisecond, "nats.ping_interval", "must be at least 100ms")
	v.check(n.MaxPingsOutstanding >= 1, "nats.max_pings_outstanding", "must be at least 1")
	v.check(n.CallbackMaxAge >= time.Hour, "nats.callback_max_age", "must be at least 1h")
	v.check(n.DuplicateWindow > 0, "nats.duplicate_window", "must be greater than 0")
	v.check(n.DuplicateWindow <= n.CallbackMaxAge, "nats.duplicate_window", "must not exceed callback_max_age")
	v.check(n.DeadLetterMaxAge >= time.Hour, "nats.dead_letter_max_age", "must be at least 1h")
	n.validateLimits(v, embedded)
}

// Smallest stream and bucket limits: below these a stream fills with a
// handful of records.
const (
	minStreamBytes = 1 << 20
	minKVBytes     = 64 << 10
)

func (n *NATS) validateLimits(v *validator, embedded bool) {
	v.check(n.CallbacksMaxBytes >= minStreamBytes, "nats.callbacks_max_bytes", "must be at least 1 MiB (1048576)")
	v.check(n.HitsMaxBytes >= minStreamBytes, "nats.hits_max_bytes", "must be at least 1 MiB (1048576)")
	v.check(n.DeadLettersMaxBytes >= minStreamBytes, "nats.dead_letters_max_bytes", "must be at least 1 MiB (1048576)")
	v.check(n.KVMaxBytes >= minKVBytes, "nats.kv_max_bytes", "must be at least 64 KiB (65536)")
	v.check(n.CorpsMaxBytes >= minKVBytes, "nats.corps_max_bytes", "must be at least 64 KiB (65536)")
	v.check(n.CorpEventsMaxBytes >= minStreamBytes, "nats.corp_events_max_bytes", "must be at least 1 MiB (1048576)")
	v.check(n.HitsDiscard == DiscardNew || n.HitsDiscard == DiscardOld, "nats.hits_discard", `must be "new" or "old"`)
	v.check(n.HitsMaxMsgSize >= 64<<10, "nats.hits_max_msg_size", "must be at least 64 KiB (65536)")
	if !embedded {
		v.check(n.MaxStoreBytes == 0, "nats.max_store_bytes", "only valid when url is empty")
	}
	// The store's room for the limits is checked in Config.Validate: it
	// depends on corps.
}

// corpKeyIDRE is a key id of corps.encryption_keys, stored beside each
// ciphertext (internal/corps checks the same).
var corpKeyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// corpKeySize is an AES-256 key's size.
const corpKeySize = 32

func (c *Corps) validate(v *validator) {
	if !c.Enabled() {
		v.check(c.CurrentKey == "", "corps.current_key", "only valid with corps.encryption_keys")
		return
	}
	ids := make([]string, 0, len(c.EncryptionKeys))
	for id := range c.EncryptionKeys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p := "corps.encryption_keys." + id
		if !corpKeyIDRE.MatchString(id) {
			// The id may be anything the file says: do not echo it.
			v.add("corps.encryption_keys", "key ids must be 1 to 64 letters, digits, '_' or '-'")
			continue
		}
		// The rule never repeats the value, which is a secret.
		k, err := base64.StdEncoding.DecodeString(c.EncryptionKeys[id].Reveal())
		switch {
		case c.EncryptionKeys[id] == "":
			v.add(p, "required (32 random bytes in base64: openssl rand -base64 32)")
		case err != nil || len(k) != corpKeySize:
			v.add(p, "must be standard base64 of 32 bytes (openssl rand -base64 32)")
		}
	}
	switch {
	case c.CurrentKey == "":
		v.add("corps.current_key", "required with corps.encryption_keys")
	case c.EncryptionKeys[c.CurrentKey] == "" && !slices.Contains(ids, c.CurrentKey):
		v.add("corps.current_key", "must be one of the ids in corps.encryption_keys")
	}
}

func (f *Fetch) validate(v *validator) {
	v.check(f.PageSize >= 1 && f.PageSize <= 1000, "fetch.page_size", "must be between 1 and 1000")
	v.check(f.MinPollInterval >= time.Second, "fetch.min_poll_interval", "must be at least 1s")
	v.check(f.PollInterval == 0 || f.PollInterval >= f.MinPollInterval, "fetch.poll_interval",
		"must be 0 (off) or at least min_poll_interval ("+f.MinPollInterval.String()+")")
	v.check(f.TokenlessPerMinute >= 1, "fetch.tokenless_per_minute", "must be at least 1")
	v.check(f.TokenlessBudgetPerMinute >= 1, "fetch.tokenless_budget_per_minute", "must be at least 1")
	v.check(f.Workers >= 1, "fetch.workers", "must be at least 1")
	v.check(f.LeaseTTL >= 3*time.Second, "fetch.lease_ttl", "must be at least 3s")
	v.check(f.HitsMaxAge >= time.Hour, "fetch.hits_max_age", "must be at least 1h")
	v.check(f.HitsDuplicateWindow > 0, "fetch.hits_duplicate_window", "must be greater than 0")
	v.check(f.HitsDuplicateWindow <= f.HitsMaxAge, "fetch.hits_duplicate_window", "must not exceed hits_max_age")
}

func (l *Log) validate(v *validator) {
	v.check(slices.Contains([]string{"debug", "info", "warn", "error"}, l.Level),
		"log.level", "must be one of debug, info, warn, error")
	v.check(l.Format == "json" || l.Format == "console", "log.format", "must be json or console")
	v.check(l.AcceptedPerSecond >= 0, "log.accepted_per_second", "must not be negative")
}

func (a *App) validate(v *validator, p string, registry bool) {
	if a.Name == "" {
		v.add(p+".name", "required")
	} else {
		v.check(appNameRE.MatchString(a.Name), p+".name", "must be 1 to 64 letters, digits, '_' or '-'")
	}

	if a.Token == "" {
		v.add(p+".token", "required")
	} else {
		v.check(utf8.RuneCountInString(string(a.Token)) <= 32, p+".token", "must be at most 32 characters")
		v.check(isAlnum(string(a.Token)), p+".token", "must be letters and digits only")
	}
	// 43 characters from [A-Za-z0-9] plus "=" always decode to a 32-byte
	// AES key, so these two rules are the whole check.
	if a.EncodingAESKey == "" {
		v.add(p+".encoding_aes_key", "required")
	} else {
		v.check(utf8.RuneCountInString(string(a.EncodingAESKey)) == 43, p+".encoding_aes_key", "must be 43 characters")
		v.check(isAlnum(string(a.EncodingAESKey)), p+".encoding_aes_key", "must be letters and digits only")
	}
	// receive_id defaults to suite_id or corp_id: when that is missing too,
	// its own "required" names the fault, once.
	v.check(a.ReceiveID != "" || (a.Mode == ModeArchive && a.SuiteID == "") || (a.Mode == ModeZone && a.CorpID == "") ||
		(a.Mode != ModeArchive && a.Mode != ModeZone), p+".receive_id", "required")
	v.check(validBaseURL(a.APIBaseURL), p+".api_base_url", "must be an absolute http(s) URL without query")

	switch a.Mode {
	case "":
		v.add(p+".mode", "required")
	case ModeArchive:
		a.validateArchive(v, p, registry)
	case ModeZone:
		a.validateZone(v, p)
	default:
		v.add(p+".mode", "must be archive or zone")
	}
}

func (a *App) validateArchive(v *validator, p string, registry bool) {
	const req = "required when mode is archive"
	v.check(a.SuiteID != "", p+".suite_id", req)
	v.check(a.SuiteSecret != "", p+".suite_secret", req)
	// With the registry on, corps arrive through create_auth: the file
	// may list none.
	v.check(registry || len(a.Corps) > 0, p+".corps",
		"at least one corp is required when mode is archive (or set corps.encryption_keys)")
	seen := make(map[string]bool, len(a.Corps))
	for j, c := range a.Corps {
		cp := fmt.Sprintf("%s.corps[%d]", p, j)
		if c.CorpID == "" {
			v.add(cp+".corp_id", "required")
		} else {
			v.check(!seen[c.CorpID], cp+".corp_id", "must be unique")
			seen[c.CorpID] = true
		}
		v.check(c.PermanentCode != "", cp+".permanent_code", "required")
	}

	// Zone settings in an archive app would be silently unused.
	const zoneOnly = "only valid when mode is zone"
	v.check(a.CorpSecret == "", p+".corp_secret", zoneOnly)
	v.check(a.ProgramID == "", p+".program_id", zoneOnly)
	v.check(len(a.Abilities) == 0, p+".abilities", zoneOnly)
	v.check(!a.WrapAbilityIO, p+".wrap_ability_io", zoneOnly)
}

func (a *App) validateZone(v *validator, p string) {
	const req = "required when mode is zone"
	v.check(a.CorpID != "", p+".corp_id", req)
	v.check(a.CorpSecret != "", p+".corp_secret", req)
	v.check(a.ProgramID != "", p+".program_id", req)
	ops := make([]string, 0, len(a.Abilities))
	for op := range a.Abilities {
		ops = append(ops, op)
	}
	slices.Sort(ops) // stable error order
	for _, op := range ops {
		ap := p + ".abilities." + op
		if !slices.Contains(operations, op) {
			v.add(ap, "unknown operation (want one of "+strings.Join(operations, ", ")+")")
			continue
		}
		v.check(a.Abilities[op] != "", ap, "must not be empty")
	}

	const archiveOnly = "only valid when mode is archive"
	v.check(a.SuiteID == "", p+".suite_id", archiveOnly)
	v.check(a.SuiteSecret == "", p+".suite_secret", archiveOnly)
	v.check(len(a.Corps) == 0, p+".corps", archiveOnly)
}

func isHostPort(s string) bool {
	_, _, err := net.SplitHostPort(s)
	return err == nil
}

// validNATSURLs accepts what nats.go accepts: comma-separated URLs, the
// scheme defaulting to nats://.
func validNATSURLs(s string) bool {
	for u := range strings.SplitSeq(s, ",") {
		u = strings.TrimSpace(u)
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		if p, err := url.Parse(u); err != nil || p.Host == "" {
			return false
		}
	}
	return true
}

func validBaseURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") &&
		u.Host != "" && u.RawQuery == "" && !u.ForceQuery && u.Fragment == ""
}

func isAlnum(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

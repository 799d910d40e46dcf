// Package config loads and validates the receiver's YAML configuration.
//
// Loading reads one file and the environment and nothing else: it does not
// log, create directories or dial anything, so check-config and tests can run
// it freely. Secret fields have the type Secret, which redacts itself when
// printed or marshalled; call Reveal where the value is really needed.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Modes of an app: which WeCom product generation it integrates.
const (
	// ModeArchive is 会话存档接口授权: hit_keyword arrives at our callback
	// URL and hits are fetched over HTTPS with a suite-issued corp token.
	ModeArchive = "archive"
	// ModeZone is 数据与智能专区: a zone program notifies us with
	// program_notify and every call goes through one of its abilities.
	ModeZone = "zone"
)

// operations are the keys App.Abilities may have.
var operations = []string{
	"get_hit_msg_list", "create_rule", "get_rule_list", "get_rule_detail",
	"update_rule", "delete_rule", "search_msg",
}

// DefaultAPIBaseURL is WeCom's API host.
const DefaultAPIBaseURL = "https://qyapi.weixin.qq.com"

// Config is the whole receiver configuration. Load and Parse return it with
// defaults applied, relative paths resolved and Validate passed.
type Config struct {
	// AllowSampleSecrets lets apps use WeCom's published sample Token and
	// EncodingAESKey (see SampleSecret), which Validate refuses otherwise:
	// anyone can sign callbacks with them. For the simulator and for rigs
	// that replay WeCom's official test vectors; serve warns at every
	// start while it is on. Default false.
	AllowSampleSecrets bool `yaml:"allow_sample_secrets"`

	// MemoryLimitBytes is the floor of the Go runtime's soft memory limit
	// (runtime/debug.SetMemoryLimit), which serve sets unless the
	// GOMEMLIMIT environment variable is set: up to it the garbage
	// collector works harder to keep the heap under it. It is not a cap:
	// while the live heap outgrows it, internal/memlimit raises the limit
	// to follow. 0 leaves the runtime's default (no limit). Default
	// DefaultMemoryLimitBytes.
	MemoryLimitBytes int64 `yaml:"memory_limit_bytes"`

	HTTP  HTTP  `yaml:"http"`
	Admin Admin `yaml:"admin"`
	NATS  NATS  `yaml:"nats"`
	Fetch Fetch `yaml:"fetch"`
	Log   Log   `yaml:"log"`
	Corps Corps `yaml:"corps"`
	Apps  []App `yaml:"apps"`

	// envVars maps a YAML path to the environment variable its value came
	// from, so that Validate can say which variable to set. Parse fills it;
	// a Config built in code has none.
	envVars map[string]string
}

// Admin configures the operators' listener: /metrics, /healthz, /readyz,
// and the admin API under /api.
type Admin struct {
	// Listen is the admin listener's host:port; empty turns it off.
	// /metrics there is unauthenticated. Default "127.0.0.1:9090".
	Listen string `yaml:"listen"`
	// Token is the bearer token of the admin API; empty turns the API off
	// (/api answers 404). At least 16 characters. Default empty.
	Token Secret `yaml:"token"`
	// MaxConnections caps the listener's open connections; more are
	// closed as they arrive. Default 64.
	MaxConnections int `yaml:"max_connections"`
	// AllowedHosts are host names (without port) that requests may carry
	// in Host besides IP addresses, "localhost" and the listen address's
	// host; any other Host is refused, which defeats DNS rebinding.
	// Default none.
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// Fetch configures how hits are fetched and published.
type Fetch struct {
	// PageSize is get_hit_msg_list's limit, 1..1000. Default 1000.
	PageSize int `yaml:"page_size"`
	// PollInterval is how often every (app, corp) is fetched without a
	// token, to catch hits whose callbacks were lost; 0 turns it off.
	// Default 5m.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MinPollInterval is the least PollInterval accepted. Default 1m, which
	// keeps token-less calls clear of WeCom's rate limit; tests against the
	// simulator lower it to exercise polls within seconds.
	MinPollInterval time.Duration `yaml:"min_poll_interval"`
	// TokenlessPerMinute caps token-less get_hit_msg_list calls per
	// (app, corp). Default 6.
	TokenlessPerMinute int `yaml:"tokenless_per_minute"`
	// TokenlessBudgetPerMinute caps token-less get_hit_msg_list calls per
	// minute across every app and corp of one replica; polls wait for it,
	// callbacks go first. Default 2400: 10,000 corps polled every 5m, and
	// a fifth to spare.
	TokenlessBudgetPerMinute int `yaml:"tokenless_budget_per_minute"`
	// Workers is how many pages one replica fetches at once, across all
	// corps. Default 16.
	Workers int `yaml:"workers"`
	// LeaseTTL is how long a replica's claim on an (app, corp) lasts
	// without renewal: a replica that dies mid-fetch blocks that (app,
	// corp) about this long. Claims exist only while fetching. Default 10s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// HitsMaxAge is how long WECOM_HITS keeps events. Default 168h.
	HitsMaxAge time.Duration `yaml:"hits_max_age"`
	// HitsDuplicateWindow is WECOM_HITS' Nats-Msg-Id dedup window. Default 20m.
	HitsDuplicateWindow time.Duration `yaml:"hits_duplicate_window"`
}

// HTTP configures the callback server.
type HTTP struct {
	// Listen is the address the server binds. Default ":8080".
	Listen string `yaml:"listen"`
	// MaxBodyBytes caps a callback body. Default 65536.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// AckTimeout bounds the wait for the JetStream PubAck before the
	// handler answers 503; it stays under WeCom's 5 s deadline so WeCom
	// gets an answer and retries. Default 3s.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// TimestampWindow rejects callbacks whose timestamp is further than this
	// from now (replay guard); 0 disables the check. Default 1h.
	TimestampWindow time.Duration `yaml:"timestamp_window"`
	// ShutdownTimeout bounds the graceful shutdown. Default 20s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ReadyGrace is how long the server keeps serving after /readyz starts
	// failing on shutdown, so a load balancer notices before the port
	// closes. Default 0s; a few seconds behind a balancer.
	ReadyGrace time.Duration `yaml:"ready_grace"`
	// MaxConnections caps the callback listener's open connections; more
	// are closed as they arrive, which keeps file descriptors and memory
	// for NATS and the connections already open. Default 4096.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a keep-alive connection idle this long. Default 30s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// NATS configures the JetStream connection, or the embedded server when URL
// is empty.
type NATS struct {
	// URL is a NATS server URL, or several separated by commas; empty runs
	// an embedded nats-server. See URLs.
	URL string `yaml:"url"`
	// StoreDir is the embedded server's JetStream directory, resolved
	// against the config file's directory. Default "data/nats".
	StoreDir string `yaml:"store_dir"`
	// Listen is the embedded server's client port (host:port) for local
	// consumers; empty keeps it in-process only. TCP clients must log in
	// with one of the role credentials in CredentialsDir.
	Listen string `yaml:"listen"`
	// CredentialsDir is where the embedded server keeps the nkey seeds of
	// its TCP roles (consumer.nk, operator.nk), created on first start
	// (resolved). Embedded server only. Empty: <store_dir>/credentials; read
	// it through RolesDir.
	CredentialsDir string `yaml:"credentials_dir"`
	// SubjectPrefix is the first token(s) of every subject. Default "wecom".
	SubjectPrefix string `yaml:"subject_prefix"`
	// Replicas of each stream and KV bucket. Default 1.
	Replicas int `yaml:"replicas"`
	// SyncAlways makes the embedded server fsync every write.
	SyncAlways bool `yaml:"sync_always"`
	// CredentialsFile is a NATS .creds file, or an nkey seed file
	// (resolved), external servers only.
	CredentialsFile string `yaml:"credentials_file"`
	// TLSCAFile verifies an external server (resolved).
	TLSCAFile string `yaml:"tls_ca_file"`
	// TLSCertFile and TLSKeyFile are a client certificate (resolved).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// ConnectTimeout bounds connecting to NATS. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// SetupTimeout is how long start-up keeps trying to create or bind the
	// streams and buckets while the cluster cannot answer yet (forming,
	// electing leaders, other replicas setting up at the same moment)
	// before the process gives up. Default 1m.
	SetupTimeout time.Duration `yaml:"setup_timeout"`
	// PingInterval and MaxPingsOutstanding bound how long a dead link to a
	// NATS server (a partitioned node) goes unnoticed: about
	// ping_interval x (max_pings_outstanding + 1), after which the
	// connection moves to another server; a write to the server gets as
	// long, and at least 5s. Defaults 2s and 3 (6-8 s).
	PingInterval        time.Duration `yaml:"ping_interval"`
	MaxPingsOutstanding int           `yaml:"max_pings_outstanding"`
	// CallbackMaxAge is how long WECOM_CALLBACKS keeps records. Default 72h.
	CallbackMaxAge time.Duration `yaml:"callback_max_age"`
	// DuplicateWindow is how long a callback's id is remembered once it
	// is stored in WECOM_CALLBACKS, so that WeCom's retries and replays
	// become one record: by the receiver itself with the embedded server
	// (intake.WithLocalDedup), by the NATS server's Nats-Msg-Id window on
	// an external one. At least http.timestamp_window, so a captured
	// callback replayed within the replay guard's window is still
	// recognised. Default 1h.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// CallbackBatching stores callbacks that arrive while another is
	// being stored as one JetStream fast batch, answered by one commit
	// instead of a PubAck each (intake, group commit), and sets
	// WECOM_CALLBACKS' allow_batched. It needs nats-server 2.14 or later
	// on every server: 2.12 and 2.13 refuse the stream setting (the
	// receiver then sets the stream up without it) and run a stream that
	// has it offline; before 2.12 the receiver stores each callback alone
	// and logs that once. Default true.
	CallbackBatching bool `yaml:"callback_batching"`
	// HitBatching publishes each page's hit events to WECOM_HITS as
	// JetStream fast batches (publish) and sets the stream's
	// allow_batched; nats-server versions as for CallbackBatching.
	// Default true.
	HitBatching bool `yaml:"hit_batching"`
	// DeadLetterMaxAge is how long WECOM_DEAD_LETTERS keeps dead letters
	// for an operator to list and replay. Default 336h (14 days).
	DeadLetterMaxAge time.Duration `yaml:"dead_letter_max_age"`

	// Storage limits, in bytes. Every stream and bucket has one, so no one
	// of them can take the room the others need, and the embedded server's
	// store has one that holds them all (Validate checks the sum).

	// MaxStoreBytes caps the embedded server's JetStream file store. Once
	// it is used up every write fails, whatever the stream. Embedded only
	// (an external server has its own limits). Default 1 GiB.
	MaxStoreBytes int64 `yaml:"max_store_bytes"`
	// CallbacksMaxBytes caps WECOM_CALLBACKS. When it is full, new
	// callbacks are refused (503 store_full, and WeCom retries) rather
	// than stored ones dropped. Handled records stay for audit until
	// callback_max_age, or until the stream is half full, when the
	// receiver purges them; so size it for the traffic of the longest
	// stretch the intake consumers may be stopped or behind. Default 256 MiB.
	CallbacksMaxBytes int64 `yaml:"callbacks_max_bytes"`
	// HitsMaxBytes caps WECOM_HITS. What happens when it is full is
	// HitsDiscard's choice. Default 512 MiB.
	HitsMaxBytes int64 `yaml:"hits_max_bytes"`
	// HitsDiscard is what a full WECOM_HITS does: "new" (default) refuses
	// the publish, so the fetch stops with its cursor unmoved and resumes
	// where it stopped once there is room (nothing unread is lost, but
	// nothing new arrives until the oldest events age out by hits_max_age,
	// however fast consumers read: WeCom keeps hits for five days only, so
	// size the stream for more than that much traffic); "old"
	// drops the oldest events to make room, so fetching never stops but a
	// consumer that lags by more than hits_max_bytes misses events.
	HitsDiscard string `yaml:"hits_discard"`
	// HitsMaxMsgSize caps one hit event. A bigger event fails its page
	// again and again, so keep it at NATS's max payload. Default 1 MiB.
	HitsMaxMsgSize int32 `yaml:"hits_max_msg_size"`
	// DeadLettersMaxBytes caps WECOM_DEAD_LETTERS (refuses new dead
	// letters when full). Default 64 MiB.
	DeadLettersMaxBytes int64 `yaml:"dead_letters_max_bytes"`
	// KVMaxBytes caps each of the KV buckets (tokens, suite tickets,
	// token locks, cursors, fetch leases, hit tokens, corp health); they
	// hold a few small values per app and corp. Default 4 MiB.
	KVMaxBytes int64 `yaml:"kv_max_bytes"`
	// CorpsMaxBytes caps each of the corp registry's two buckets
	// (wecom_corps and wecom_corp_auth_codes). An entry takes about 500
	// bytes, so the default, 8 MiB, holds 10,000 corps with room to spare.
	CorpsMaxBytes int64 `yaml:"corps_max_bytes"`
	// CorpEventsMaxBytes caps WECOM_CORP_EVENTS, the corp lifecycle
	// events, kept 30 days (refuses new events when full). An event takes
	// about 500 bytes. Default 8 MiB.
	CorpEventsMaxBytes int64 `yaml:"corp_events_max_bytes"`
}

// DefaultMemoryLimitBytes is memory_limit_bytes' default; BENCHMARKS.md
// has the measurements it was chosen by.
const DefaultMemoryLimitBytes = 64 << 20

// DefaultMaxStoreBytes is nats.max_store_bytes' default for the embedded
// server: the default stream and bucket limits (860 MiB) and room for
// consumer state and the store's own files.
const DefaultMaxStoreBytes = 1 << 30

// KVBuckets is how many KV buckets the receiver keeps capped at
// NATS.KVMaxBytes.
const KVBuckets = 7

// CorpBuckets is how many KV buckets the corp registry keeps, each capped
// at NATS.CorpsMaxBytes: the registry and its auth codes.
const CorpBuckets = 2

// Hits discard policies (NATS.HitsDiscard).
const (
	DiscardNew = "new"
	DiscardOld = "old"
)

// ReservedBytes is what the streams and buckets may hold at most: the
// store limit must be at least this (the server reserves each stream's
// and bucket's limit when it is created). The corp registry's buckets and
// the corp event stream count only when the registry is on
// (corps.encryption_keys): otherwise they are not created.
func (c *Config) ReservedBytes() int64 {
	n := c.NATS
	r := n.CallbacksMaxBytes + n.HitsMaxBytes + n.DeadLettersMaxBytes + KVBuckets*n.KVMaxBytes
	if c.Corps.Enabled() {
		r += CorpBuckets*n.CorpsMaxBytes + n.CorpEventsMaxBytes
	}
	return r
}

// URLs splits URL at commas and trims each entry; nil when URL is empty.
func (n NATS) URLs() []string {
	var urls []string
	for u := range strings.SplitSeq(n.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// RolesDir is the directory of the embedded server's role credentials:
// CredentialsDir, or by default the "credentials" directory in StoreDir.
// The operator commands on the receiver's host find theirs there.
func (n NATS) RolesDir() string {
	if n.CredentialsDir != "" {
		return n.CredentialsDir
	}
	return filepath.Join(n.StoreDir, "credentials")
}

// Log configures the zerolog logger.
type Log struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `yaml:"level"`
	// Format is json or console. Default "json".
	Format string `yaml:"format"`
	// AcceptedPerSecond bounds the lines of accepted callbacks: at most
	// this many a second; the next line written counts the ones left out
	// ("unlogged"). Refusals and failures are always logged. 0 logs every
	// callback. Default 20.
	AcceptedPerSecond int `yaml:"accepted_per_second"`
}

// App is one WeCom app: one callback URL (/callback/{Name}) with its crypto
// settings, and the credentials to fetch its hits.
type App struct {
	// Name identifies the app in URLs and NATS subjects.
	Name string `yaml:"name"`
	// Mode is ModeArchive or ModeZone.
	Mode string `yaml:"mode"`
	// Token and EncodingAESKey are the callback's signing token and AES key.
	Token          Secret `yaml:"token"`
	EncodingAESKey Secret `yaml:"encoding_aes_key"`
	// ReceiveID is the receiveid decrypted callbacks must carry. Defaults
	// to SuiteID in archive mode and CorpID in zone mode.
	ReceiveID string `yaml:"receive_id"`
	// CorpID is the corp of a zone app; optional in archive mode.
	CorpID string `yaml:"corp_id"`
	// APIBaseURL is WeCom's API root, without trailing slash. Default
	// DefaultAPIBaseURL.
	APIBaseURL string `yaml:"api_base_url"`
	// CorpSecret is the zone app's secret for gettoken.
	CorpSecret Secret `yaml:"corp_secret"`
	// SuiteID and SuiteSecret identify the archive suite.
	SuiteID     string `yaml:"suite_id"`
	SuiteSecret Secret `yaml:"suite_secret"`
	// Corps are the corps that authorized the archive suite.
	Corps []Corp `yaml:"corps"`
	// ProgramID is the zone program the app calls.
	ProgramID string `yaml:"program_id"`
	// Abilities maps an operation (get_hit_msg_list, create_rule,
	// get_rule_list, get_rule_detail, update_rule, delete_rule, search_msg)
	// to the zone program's ability id. In zone mode an empty map becomes
	// "invoke_<operation>" for every operation.
	Abilities map[string]string `yaml:"abilities"`
	// WrapAbilityIO wraps request_data as {"input":…} and unwraps
	// {"output":…} in responses.
	WrapAbilityIO bool `yaml:"wrap_ability_io"`
}

// Corps configures the corp registry (docs/corps.md): the keys that seal
// the permanent codes it stores. With no keys the registry is off: archive
// apps serve the corps listed in the file only, and authorization
// callbacks (create_auth, ...) become dead letters.
type Corps struct {
	// EncryptionKeys maps a key id (1 to 64 of [A-Za-z0-9_-]) to standard
	// base64 of 32 random bytes (`openssl rand -base64 32`); put the values
	// in the environment (${VAR}). Keep a rotated-out key until
	// `receiver corps rekey` has run.
	EncryptionKeys map[string]Secret `yaml:"encryption_keys"`
	// CurrentKey is the id new codes are sealed under; one of
	// EncryptionKeys.
	CurrentKey string `yaml:"current_key"`
}

// Enabled reports whether the corp registry is on: keys are configured.
func (c Corps) Enabled() bool { return len(c.EncryptionKeys) > 0 }

// Keys returns the keys as plain strings, for corps.NewKeyringBase64.
func (c Corps) Keys() map[string]string {
	out := make(map[string]string, len(c.EncryptionKeys))
	for id, k := range c.EncryptionKeys {
		out[id] = k.Reveal()
	}
	return out
}

// Corp is a corp that authorized an archive suite.
type Corp struct {
	CorpID        string `yaml:"corp_id"`
	PermanentCode Secret `yaml:"permanent_code"`
}

// App returns the app with the given name.
func (c *Config) App(name string) (*App, bool) {
	for i := range c.Apps {
		if c.Apps[i].Name == name {
			return &c.Apps[i], true
		}
	}
	return nil, false
}

// AppNames returns the app names in configuration order.
func (c *Config) AppNames() []string {
	names := make([]string, len(c.Apps))
	for i, a := range c.Apps {
		names[i] = a.Name
	}
	return names
}

// Load reads the file at path and parses it like Parse, with the process
// environment and the file's directory as the base of relative paths.
func Load(path string) (*Config, error) {
	return LoadEnv(path, os.LookupEnv)
}

// LoadEnv is Load with the environment given as lookupEnv, so callers (and
// tests) decide what ${VAR} sees.
func LoadEnv(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	cfg, err := Parse(data, filepath.Dir(abs), lookupEnv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse builds a Config from YAML data: it expands ${VAR} and ${VAR:-default}
// in scalar values through lookupEnv, decodes strictly (unknown keys fail),
// applies defaults, resolves relative file paths against dir and runs
// Validate.
//
// Expansion works on the parsed node tree, so an expanded value is always one
// scalar and cannot add keys; a plain (unquoted) ${VAR} is typed after
// expansion, so it can fill int, bool and duration fields. An empty plain
// value means "use the default", as an empty YAML value does. "$$" and a "$"
// not followed by "{" are left as they are.
//
// Unset variables, unknown keys and rule violations are *FieldError values,
// joined, matching ErrInvalid; syntax and type errors come from the YAML
// library and name the line.
func Parse(data []byte, dir string, lookupEnv func(string) (string, bool)) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		if err == nil {
			return nil, errors.New("config must be a single YAML document")
		}
		return nil, err
	}

	// Every problem of the file in one go: prepare reports unknown keys,
	// unset variables and values of the wrong type (nulling them so that
	// decoding goes on), then Validate checks the rest. A path that already
	// has a decoding problem gets no second one from Validate.
	cfg := defaults()
	var (
		errs  []error
		lines map[string]int
	)
	if root.Kind != 0 {
		errs, lines, cfg.envVars = prepare(&root, lookupEnv)
		// Node.Decode cannot reject unknown keys; prepare did that.
		if err := root.Decode(&cfg); err != nil {
			return nil, errors.Join(append(errs, err)...)
		}
	}
	cfg.applyDefaults()
	cfg.resolvePaths(dir)
	if verr := cfg.Validate(); verr != nil {
		bad := map[string]bool{}
		for _, e := range errs {
			if fe := (*FieldError)(nil); errors.As(e, &fe) {
				bad[fe.Path] = true
			}
		}
		for _, e := range verr.(interface{ Unwrap() []error }).Unwrap() {
			fe := (*FieldError)(nil)
			if errors.As(e, &fe) {
				if underAny(fe.Path, bad) {
					continue
				}
				if fe.Line == 0 {
					fe.Line = lineOf(fe.Path, lines)
				}
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

// lineOf is the line of path in the file, or of its nearest ancestor there
// (a missing key is placed at the mapping that lacks it); 0 if none.
func lineOf(path string, lines map[string]int) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// underAny reports whether path is one of bad or inside one.
func underAny(path string, bad map[string]bool) bool {
	for p := range bad {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

func defaults() Config {
	return Config{
		HTTP: HTTP{
			Listen:          ":8080",
			MaxBodyBytes:    65536,
			AckTimeout:      3 * time.Second,
			TimestampWindow: time.Hour,
			ShutdownTimeout: 20 * time.Second,
			MaxConnections:  4096,
			IdleTimeout:     30 * time.Second,
		},
		Admin: Admin{Listen: "127.0.0.1:9090", MaxConnections: 64},
		NATS: NATS{
			StoreDir:         "data/nats",
			SubjectPrefix:    "wecom",
			Replicas:         1,
			ConnectTimeout:   5 * time.Second,
			SetupTimeout:     time.Minute,
			CallbackMaxAge:   72 * time.Hour,
			DuplicateWindow:  time.Hour,
			CallbackBatching: true,
			HitBatching:      true,
			DeadLetterMaxAge: 14 * 24 * time.Hour,

			PingInterval:        2 * time.Second,
			MaxPingsOutstanding: 3,

			CallbacksMaxBytes:   256 << 20,
			HitsMaxBytes:        512 << 20,
			HitsDiscard:         DiscardNew,
			HitsMaxMsgSize:      1 << 20,
			DeadLettersMaxBytes: 64 << 20,
			KVMaxBytes:          4 << 20,
			CorpsMaxBytes:       8 << 20,
			CorpEventsMaxBytes:  8 << 20,
		},
		Fetch: Fetch{
			PageSize:                 1000,
			PollInterval:             5 * time.Minute,
			MinPollInterval:          time.Minute,
			TokenlessPerMinute:       6,
			TokenlessBudgetPerMinute: 2400,
			Workers:                  16,
			LeaseTTL:                 10 * time.Second,
			HitsMaxAge:               7 * 24 * time.Hour,
			HitsDuplicateWindow:      20 * time.Minute,
		},
		Log:              Log{Level: "info", Format: "json", AcceptedPerSecond: 20},
		MemoryLimitBytes: DefaultMemoryLimitBytes,
	}
}

// applyDefaults fills the per-app defaults, which depend on the app's mode
// and so cannot be preset before decoding.
func (c *Config) applyDefaults() {
	if c.NATS.URL == "" && c.NATS.MaxStoreBytes == 0 {
		// Only the embedded server has a store of ours to cap.
		c.NATS.MaxStoreBytes = DefaultMaxStoreBytes
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		if a.APIBaseURL == "" {
			a.APIBaseURL = DefaultAPIBaseURL
		}
		// Clients append /cgi-bin/...; a trailing slash would double it.
		a.APIBaseURL = strings.TrimRight(a.APIBaseURL, "/")
		switch a.Mode {
		case ModeArchive:
			if a.ReceiveID == "" {
				a.ReceiveID = a.SuiteID
			}
		case ModeZone:
			if a.ReceiveID == "" {
				a.ReceiveID = a.CorpID
			}
			if len(a.Abilities) == 0 {
				a.Abilities = make(map[string]string, len(operations))
				for _, op := range operations {
					a.Abilities[op] = "invoke_" + op
				}
			}
		}
	}
}

// resolvePaths makes the file paths relative to dir, the config file's
// directory, so the service behaves the same from any working directory.
func (c *Config) resolvePaths(dir string) {
	for _, p := range []*string{
		&c.NATS.StoreDir, &c.NATS.CredentialsDir, &c.NATS.CredentialsFile, &c.NATS.TLSCAFile,
		&c.NATS.TLSCertFile, &c.NATS.TLSKeyFile,
	} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

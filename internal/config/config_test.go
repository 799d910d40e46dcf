package config_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

const (
	demoAESKey  = "k3Vq9ZrT2mXw8LpB4nYc6HsD1fGj5aQe7uKo0RtWxEz"
	examplePath = "../../configs/receiver.example.yaml"
)

// zoneApp is a valid zone app, an item of apps.
const zoneApp = `  - name: z
    mode: zone
    token: Tk7pLm2Q
    encoding_aes_key: ` + demoAESKey + `
    corp_id: wwCorpZ
    corp_secret: zone-secret
    program_id: prog
`

// exampleEnv holds the secrets the example config reads, none of them a
// sample value.
var exampleEnv = map[string]string{
	"WECOM_ARCHIVE_TOKEN":          "Tk7pLm2Q",
	"WECOM_ARCHIVE_AES_KEY":        demoAESKey,
	"WECOM_ARCHIVE_SUITE_SECRET":   "suite-secret-value",
	"WECOM_ARCHIVE_PERMANENT_CODE": "permanent-code-value",
}

// noEnv is an empty environment.
func noEnv(string) (string, bool) { return "", false }

// env returns a lookup over vars.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// doc returns a valid configuration with one archive app: top is inserted
// before apps (top-level sections), app is appended to the app's mapping
// (keys indented by four spaces).
func doc(top, app string) string {
	return top + `
apps:
  - name: a
    mode: archive
    token: Tk7pLm2Q
    encoding_aes_key: ` + demoAESKey + `
    suite_id: wwArchiveSuite01
    suite_secret: suite-secret-value
    corps:
      - corp_id: wwCorpABC123
        permanent_code: permanent-code-value
` + app
}

// mustParse parses data with no environment, failing the test on error.
func mustParse(tb testing.TB, data, dir string) *config.Config {
	tb.Helper()
	cfg, err := config.Parse([]byte(data), dir, noEnv)
	require.NoError(tb, err)
	return cfg
}

// messages flattens a joined error into its messages.
func messages(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, messages(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// uncommentZone returns the example file with its commented-out zone app
// enabled.
func uncommentZone(tb testing.TB, example string) string {
	tb.Helper()
	before, after, ok := strings.Cut(example, "  # - name: zone\n")
	require.True(tb, ok, "zone example not found")
	var b strings.Builder
	b.WriteString(before)
	b.WriteString("  - name: zone\n")
	for line := range strings.Lines(after) {
		b.WriteString(strings.Replace(line, "  # ", "  ", 1))
	}
	return b.String()
}

func TestParse_Example(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	require.NoError(t, err)
	dir, err := filepath.Abs(filepath.Dir(examplePath))
	require.NoError(t, err)

	t.Run("OK", func(t *testing.T) {
		cfg, err := config.Parse(data, dir, env(exampleEnv))
		require.NoError(t, err)

		assert.Equal(t, config.HTTP{
			Listen:          "127.0.0.1:8080",
			MaxBodyBytes:    65536,
			AckTimeout:      3 * time.Second,
			TimestampWindow: time.Hour,
			ShutdownTimeout: 20 * time.Second,
			MaxConnections:  4096,
			IdleTimeout:     30 * time.Second,
		}, cfg.HTTP)
		assert.Equal(t, config.Admin{Listen: "127.0.0.1:9090", MaxConnections: 64, AllowedHosts: []string{}}, cfg.Admin, "admin API off without a token")
		assert.Equal(t, config.NATS{
			StoreDir:         filepath.Join(filepath.Dir(dir), "data", "nats"),
			Listen:           "127.0.0.1:4222",
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

			MaxStoreBytes:       1 << 30,
			CallbacksMaxBytes:   256 << 20,
			HitsMaxBytes:        512 << 20,
			HitsDiscard:         "new",
			HitsMaxMsgSize:      1 << 20,
			DeadLettersMaxBytes: 64 << 20,
			KVMaxBytes:          4 << 20,
			CorpsMaxBytes:       8 << 20,
			CorpEventsMaxBytes:  8 << 20,
		}, cfg.NATS)
		assert.Equal(t, config.Log{Level: "info", Format: "json", AcceptedPerSecond: 20}, cfg.Log)
		assert.Equal(t, []config.App{{
			Name:           "archive",
			Mode:           config.ModeArchive,
			Token:          "Tk7pLm2Q",
			EncodingAESKey: demoAESKey,
			ReceiveID:      "wwArchiveSuite01",
			APIBaseURL:     "https://qyapi.weixin.qq.com",
			SuiteID:        "wwArchiveSuite01",
			SuiteSecret:    "suite-secret-value",
			Corps:          []config.Corp{{CorpID: "wwCorpABC123", PermanentCode: "permanent-code-value"}},
		}}, cfg.Apps)
	})

	// Without its variables the example does not load, and says which
	// to set; it has no sample secrets to fall back to.
	t.Run("ErrNoEnv", func(t *testing.T) {
		_, err := config.Parse(data, dir, noEnv)
		msgs := messages(err)
		require.Len(t, msgs, 4)
		// Lines move as the example is edited; the paths and variables are the point.
		for i, want := range []string{
			"apps[0].token: environment variable WECOM_ARCHIVE_TOKEN is not set (line ",
			"apps[0].encoding_aes_key: environment variable WECOM_ARCHIVE_AES_KEY is not set (line ",
			"apps[0].suite_secret: environment variable WECOM_ARCHIVE_SUITE_SECRET is not set (line ",
			"apps[0].corps[0].permanent_code: environment variable WECOM_ARCHIVE_PERMANENT_CODE is not set (line ",
		} {
			assert.True(t, strings.HasPrefix(msgs[i], want), msgs[i])
		}
	})

	t.Run("ZoneExample", func(t *testing.T) {
		vars := map[string]string{
			"WECOM_ZONE_TOKEN":       "zoneToken1",
			"WECOM_ZONE_AES_KEY":     demoAESKey,
			"WECOM_ZONE_CORP_SECRET": "zone-corp-secret",
			"WECOM_ZONE_PROGRAM_ID":  "prog1",
		}
		maps.Copy(vars, exampleEnv)
		cfg, err := config.Parse([]byte(uncommentZone(t, string(data))), dir, env(vars))
		require.NoError(t, err)
		app, ok := cfg.App("zone")
		require.True(t, ok)
		assert.Equal(t, config.App{
			Name:           "zone",
			Mode:           config.ModeZone,
			Token:          "zoneToken1",
			EncodingAESKey: demoAESKey,
			ReceiveID:      "wwCorpABC123",
			CorpID:         "wwCorpABC123",
			APIBaseURL:     "https://qyapi.weixin.qq.com",
			CorpSecret:     "zone-corp-secret",
			ProgramID:      "prog1",
			Abilities: map[string]string{
				"get_hit_msg_list": "invoke_get_hit_msg_list",
				"search_msg":       "invoke_search_msg",
			},
		}, *app)
	})

	t.Run("ZoneExampleNeedsEnv", func(t *testing.T) {
		_, err := config.Parse([]byte(uncommentZone(t, string(data))), dir, env(exampleEnv))
		// The line moves as the example is edited; that there is one is the point.
		assert.Condition(t, func() bool {
			for _, m := range messages(err) {
				if strings.HasPrefix(m, "apps[1].corp_secret: environment variable WECOM_ZONE_CORP_SECRET is not set (line ") {
					return true
				}
			}
			return false
		}, "%q", messages(err))
	})
}

func TestLoad(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "receiver.yaml")
		require.NoError(t, os.WriteFile(path, []byte(doc("nats:\n  store_dir: state\n", "")), 0o600))

		cfg, err := config.Load(path)
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(dir, "state"), cfg.NATS.StoreDir)
		assert.Equal(t, []string{"a"}, cfg.AppNames())
	})

	t.Run("ErrNotExist", func(t *testing.T) {
		_, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"))
		assert.ErrorIs(t, err, os.ErrNotExist)
	})

	t.Run("ErrInvalidNamesFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "receiver.yaml")
		require.NoError(t, os.WriteFile(path, []byte("apps: []\n"), 0o600))
		_, err := config.Load(path)
		assert.ErrorIs(t, err, config.ErrInvalid)
		assert.ErrorContains(t, err, path)
		assert.ErrorContains(t, err, "apps: at least one app is required")
	})
}

func TestParse_Env(t *testing.T) {
	for _, tt := range []struct {
		name  string
		top   string
		app   string
		env   map[string]string
		check func(t *testing.T, cfg *config.Config)
	}{
		{
			name: "Var",
			app:  "    corp_id: ${CORP}\n",
			env:  map[string]string{"CORP": "wwFromEnv"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "wwFromEnv", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "VarInsideText",
			app:  "    corp_id: pre-${CORP}-post\n",
			env:  map[string]string{"CORP": "x"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "pre-x-post", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "DefaultWhenUnset",
			app:  "    corp_id: ${CORP:-wwDefault}\n",
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "wwDefault", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "DefaultWhenEmpty",
			app:  "    corp_id: ${CORP:-wwDefault}\n",
			env:  map[string]string{"CORP": ""},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "wwDefault", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "SetOverridesDefault",
			app:  "    corp_id: ${CORP:-wwDefault}\n",
			env:  map[string]string{"CORP": "wwSet"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "wwSet", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "SecretFromEnv",
			app:  "    receive_id: ${RID}\n",
			env:  map[string]string{"RID": "wwRecv"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "wwRecv", cfg.Apps[0].ReceiveID)
			},
		},
		{
			name: "IntDurationBool",
			top:  "http:\n  max_body_bytes: ${MAX}\n  ack_timeout: ${ACK}\nnats:\n  sync_always: ${SYNC}\n  replicas: ${R:-1}\n",
			env:  map[string]string{"MAX": "2048", "ACK": "1500ms", "SYNC": "true"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, int64(2048), cfg.HTTP.MaxBodyBytes)
				assert.Equal(t, 1500*time.Millisecond, cfg.HTTP.AckTimeout)
				assert.True(t, cfg.NATS.SyncAlways)
				assert.Equal(t, 1, cfg.NATS.Replicas)
			},
		},
		{
			name: "CallbackBatchingOff",
			top:  "nats:\n  callback_batching: ${BATCH}\n",
			env:  map[string]string{"BATCH": "false"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.False(t, cfg.NATS.CallbackBatching)
			},
		},
		{
			name: "HitBatchingOff",
			top:  "nats:\n  hit_batching: false\n",
			check: func(t *testing.T, cfg *config.Config) {
				assert.False(t, cfg.NATS.HitBatching)
				assert.True(t, cfg.NATS.CallbackBatching, "apart from callback_batching")
			},
		},
		{
			name: "CallbackBatchingEmptyMeansDefault",
			top:  "nats:\n  callback_batching: ${BATCH:-}\n",
			check: func(t *testing.T, cfg *config.Config) {
				assert.True(t, cfg.NATS.CallbackBatching)
			},
		},
		{
			name: "EmptyPlainMeansDefault",
			top:  "http:\n  max_body_bytes: ${MAX:-}\n",
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, int64(65536), cfg.HTTP.MaxBodyBytes)
			},
		},
		{
			name: "NullWordStaysString",
			app:  "    corp_id: ${CORP}\n",
			env:  map[string]string{"CORP": "null"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "null", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "NumberIntoStringField",
			app:  "    corp_id: ${CORP}\n",
			env:  map[string]string{"CORP": "0123"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "0123", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "InjectNewlineKey",
			app:  "    corp_id: ${CORP}\n",
			env:  map[string]string{"CORP": "x\n  evil: 1"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "x\n  evil: 1", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "InjectMapping",
			app:  "    corp_id: ${CORP}\n",
			env:  map[string]string{"CORP": ": x"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, ": x", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "InjectIntoQuoted",
			app:  "    corp_id: \"${CORP}\"\n",
			env:  map[string]string{"CORP": "a\"\n    program_id: p"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "a\"\n    program_id: p", cfg.Apps[0].CorpID)
				assert.Empty(t, cfg.Apps[0].ProgramID)
			},
		},
		{
			name: "AliasExpandedOnce",
			app:  "    corp_id: &c ${C}\n    receive_id: *c\n",
			env:  map[string]string{"C": "${G}", "G": "no"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "${G}", cfg.Apps[0].CorpID)
				assert.Equal(t, "${G}", cfg.Apps[0].ReceiveID)
			},
		},
		{
			name: "ValueNotExpandedTwice",
			app:  "    corp_id: ${CORP}\n",
			env:  map[string]string{"CORP": "${OTHER}", "OTHER": "no"},
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "${OTHER}", cfg.Apps[0].CorpID)
			},
		},
		{
			name: "DollarsLiteral",
			app:  "    corp_id: a$b$$c$${X}$\n",
			check: func(t *testing.T, cfg *config.Config) {
				assert.Equal(t, "a$b$$c$${X}$", cfg.Apps[0].CorpID)
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(doc(tt.top, tt.app)), "", env(tt.env))
			require.NoError(t, err)
			tt.check(t, cfg)
		})
	}

	t.Run("KeysNotExpanded", func(t *testing.T) {
		zone := doc("", zoneApp+"    abilities:\n      ${OP}: x\n")
		_, err := config.Parse([]byte(zone), "", env(map[string]string{"OP": "search_msg"}))
		assert.Contains(t, messages(err), "apps[1].abilities.${OP}: unknown operation (want one of get_hit_msg_list, create_rule, get_rule_list, get_rule_detail, update_rule, delete_rule, search_msg) (line 20)")
	})
}

func TestParse_EnvErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		top  string
		app  string
		env  map[string]string
		want []string
	}{
		{
			name: "ErrUnset",
			app:  "    corp_id: ${WECOM_CORP_ID}\n",
			want: []string{"apps[0].corp_id: environment variable WECOM_CORP_ID is not set (line 12)"},
		},
		{
			name: "ErrUnsetAll",
			top:  "log:\n  level: ${LEVEL}\n",
			app:  "    corp_id: ${A}-${B}\n",
			want: []string{
				"log.level: environment variable LEVEL is not set (line 2)",
				"apps[0].corp_id: environment variable A is not set; environment variable B is not set (line 14)",
			},
		},
		{
			name: "ErrUnterminated",
			app:  "    corp_id: ${CORP\n",
			want: []string{"apps[0].corp_id: unterminated ${ in value (line 12)"},
		},
		{
			name: "ErrMalformed",
			app:  "    corp_id: ${1X}\n",
			want: []string{"apps[0].corp_id: malformed environment variable reference (line 12)"},
		},
		{
			name: "ErrEmptyName",
			app:  "    corp_id: ${:-x}\n",
			want: []string{"apps[0].corp_id: malformed environment variable reference (line 12)"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(doc(tt.top, tt.app)), "", env(tt.env))
			require.Error(t, err)
			assert.ErrorIs(t, err, config.ErrInvalid)
			assert.Equal(t, tt.want, messages(err))
		})
	}

	t.Run("TypeErrorNamesLine", func(t *testing.T) {
		_, err := config.Parse([]byte(doc("http:\n  ack_timeout: ${ACK}\n", "")), "", env(map[string]string{"ACK": "soon"}))
		assert.EqualError(t, err, "http.ack_timeout: is not a duration such as 90s, 5m or 1h (line 2)",
			"path and line; a value from the environment is not shown")
		assert.ErrorIs(t, err, config.ErrInvalid)
	})
}

func TestParse_Decode(t *testing.T) {
	for _, tt := range []struct {
		name    string
		data    string
		want    string // substring of the error
		invalid bool   // errors.Is(err, ErrInvalid)
	}{
		{
			name:    "ErrUnknownTopKey",
			data:    doc("metrics:\n  listen: :9090\n", ""),
			want:    "metrics: unknown key (line 1)",
			invalid: true,
		},
		{
			name:    "ErrUnknownNestedKey",
			data:    doc("http:\n  listen: :8080\n  lsten: :8081\n", ""),
			want:    "http.lsten: unknown key (line 3)",
			invalid: true,
		},
		{
			name:    "ErrUnknownAppKey",
			data:    doc("", "    secret: x\n"),
			want:    "apps[0].secret: unknown key (line 12)",
			invalid: true,
		},
		{
			name:    "ErrUnknownCorpKey",
			data:    doc("", "      - corp_id: wwOther\n        permanent_code: p\n        code: x\n"),
			want:    "apps[0].corps[1].code: unknown key (line 14)",
			invalid: true,
		},
		{
			name:    "ErrUnknownKeyInMerge",
			data:    "base: &b\n  lsten: x\n" + doc("http:\n  <<: *b\n", ""),
			want:    "http.lsten: unknown key (line 2)",
			invalid: true,
		},
		{
			name:    "ErrUnknownKeyInMergeList",
			data:    "base: &b\n  lsten: x\n" + doc("http:\n  <<: [*b]\n", ""),
			want:    "http.lsten: unknown key (line 2)",
			invalid: true,
		},
		{
			name: "ErrMergeCycle",
			data: doc("log: &l\n  <<: *l\n", ""),
			want: "anchor 'l' value contains itself",
		},
		{
			name:    "ErrEnvIntoSection",
			data:    doc("log: ${LOG}\n", ""),
			want:    "log: environment variable LOG is not set (line 1)",
			invalid: true,
		},
		{
			name:    "ErrCommentsOnly",
			data:    "# nothing here\n",
			want:    "apps: at least one app is required",
			invalid: true,
		},
		{
			name: "ErrSyntax",
			data: "http:\n  listen: [\n",
			want: "line",
		},
		{
			name: "ErrTabIndent",
			data: "http:\n\tlisten: x\n",
			want: "yaml: line 2",
		},
		{
			name:    "ErrType",
			data:    doc("http:\n  max_body_bytes: lots\n", ""),
			want:    "http.max_body_bytes: \"lots\" is not a whole number (line 2)",
			invalid: true,
		},
		{
			name: "ErrDuplicateKey",
			data: doc("log:\n  level: info\n  level: debug\n", ""),
			want: "line 3: mapping key \"level\" already defined at line 2",
		},
		{
			name: "ErrTwoDocuments",
			data: doc("", "") + "---\nlog:\n  level: debug\n",
			want: "single YAML document",
		},
		{
			name:    "ErrEmpty",
			data:    "",
			want:    "apps: at least one app is required",
			invalid: true,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.data), "", noEnv)
			require.Error(t, err)
			assert.ErrorContains(t, err, tt.want)
			assert.Equal(t, tt.invalid, errors.Is(err, config.ErrInvalid))
		})
	}

	t.Run("MergeKey", func(t *testing.T) {
		cfg := mustParse(t, doc("log:\n  <<: {level: debug}\n  format: console\n", ""), "")
		assert.Equal(t, config.Log{Level: "debug", Format: "console", AcceptedPerSecond: 20}, cfg.Log)
	})
}

func TestParse_Defaults(t *testing.T) {
	zone := "apps:\n" + zoneApp
	t.Run("Archive", func(t *testing.T) {
		cfg := mustParse(t, doc("", ""), "")
		a := cfg.Apps[0]
		assert.Equal(t, "wwArchiveSuite01", a.ReceiveID)
		assert.Equal(t, config.DefaultAPIBaseURL, a.APIBaseURL)
		assert.Nil(t, a.Abilities)
		assert.Equal(t, "data/nats", cfg.NATS.StoreDir)
	})

	t.Run("ExplicitReceiveID", func(t *testing.T) {
		cfg := mustParse(t, doc("", "    receive_id: wwOther\n"), "")
		assert.Equal(t, "wwOther", cfg.Apps[0].ReceiveID)
	})

	t.Run("APIBaseURLTrailingSlash", func(t *testing.T) {
		cfg := mustParse(t, doc("", "    api_base_url: http://127.0.0.1:9000/wecom/\n"), "")
		assert.Equal(t, "http://127.0.0.1:9000/wecom", cfg.Apps[0].APIBaseURL)
	})

	t.Run("Zone", func(t *testing.T) {
		cfg := mustParse(t, zone, "")
		a := cfg.Apps[0]
		assert.Equal(t, "wwCorpZ", a.ReceiveID)
		assert.Equal(t, map[string]string{
			"get_hit_msg_list": "invoke_get_hit_msg_list",
			"create_rule":      "invoke_create_rule",
			"get_rule_list":    "invoke_get_rule_list",
			"get_rule_detail":  "invoke_get_rule_detail",
			"update_rule":      "invoke_update_rule",
			"delete_rule":      "invoke_delete_rule",
			"search_msg":       "invoke_search_msg",
		}, a.Abilities)
		assert.False(t, a.WrapAbilityIO)
	})

	t.Run("ZoneAbilitiesGiven", func(t *testing.T) {
		cfg := mustParse(t, zone+"    abilities:\n      get_hit_msg_list: hits\n    wrap_ability_io: true\n", "")
		assert.Equal(t, map[string]string{"get_hit_msg_list": "hits"}, cfg.Apps[0].Abilities)
		assert.True(t, cfg.Apps[0].WrapAbilityIO)
	})

	t.Run("ZeroTimestampWindowKept", func(t *testing.T) {
		cfg := mustParse(t, doc("http:\n  timestamp_window: 0s\n", ""), "")
		assert.Zero(t, cfg.HTTP.TimestampWindow)
	})

	t.Run("Admin", func(t *testing.T) {
		cfg := mustParse(t, doc("", ""), "")
		assert.Equal(t, config.Admin{Listen: "127.0.0.1:9090", MaxConnections: 64}, cfg.Admin)
	})

	t.Run("AdminOff", func(t *testing.T) {
		// An explicit empty string turns the listener off; it is not
		// replaced by the default.
		cfg := mustParse(t, doc("admin:\n  listen: \"\"\n", ""), "")
		assert.Empty(t, cfg.Admin.Listen)
	})

	t.Run("AdminTokenFromEnv", func(t *testing.T) {
		cfg, err := config.Parse([]byte(doc("admin:\n  listen: 127.0.0.1:0\n  token: ${ADMIN_TOKEN}\n", "")), "",
			env(map[string]string{"ADMIN_TOKEN": "0123456789abcdef-admin"}))
		require.NoError(t, err)
		assert.Equal(t, "0123456789abcdef-admin", cfg.Admin.Token.Reveal())
		assert.Equal(t, "127.0.0.1:0", cfg.Admin.Listen)
		assert.NotContains(t, fmt.Sprintf("%+v", cfg), "0123456789abcdef-admin")
	})
}

func TestParse_Paths(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	abs := filepath.Join(t.TempDir(), "abs")
	for _, tt := range []struct {
		name string
		nats string
		want config.NATS
	}{
		{
			name: "EmbeddedRelative",
			nats: "  store_dir: ../data/nats\n",
			want: config.NATS{StoreDir: filepath.Join(filepath.Dir(dir), "data", "nats")},
		},
		{
			name: "EmbeddedAbsolute",
			nats: "  store_dir: " + abs + "\n",
			want: config.NATS{StoreDir: abs},
		},
		{
			name: "EmbeddedCredentialsDir",
			nats: "  store_dir: " + abs + "\n  credentials_dir: secrets/nats\n",
			want: config.NATS{StoreDir: abs, CredentialsDir: filepath.Join(dir, "secrets", "nats")},
		},
		{
			name: "ExternalRelative",
			nats: "  url: nats://n1:4222\n  credentials_file: nats.creds\n  tls_ca_file: tls/ca.pem\n  tls_cert_file: tls/c.pem\n  tls_key_file: tls/k.pem\n",
			want: config.NATS{
				StoreDir:        filepath.Join(dir, "data", "nats"),
				CredentialsFile: filepath.Join(dir, "nats.creds"),
				TLSCAFile:       filepath.Join(dir, "tls", "ca.pem"),
				TLSCertFile:     filepath.Join(dir, "tls", "c.pem"),
				TLSKeyFile:      filepath.Join(dir, "tls", "k.pem"),
			},
		},
		{
			name: "ExternalAbsolute",
			nats: "  url: nats://n1:4222\n  credentials_file: " + abs + "/n.creds\n  tls_ca_file: " + abs + "/ca.pem\n  tls_cert_file: " + abs + "/c.pem\n  tls_key_file: " + abs + "/k.pem\n",
			want: config.NATS{
				StoreDir:        filepath.Join(dir, "data", "nats"),
				CredentialsFile: filepath.Join(abs, "n.creds"),
				TLSCAFile:       filepath.Join(abs, "ca.pem"),
				TLSCertFile:     filepath.Join(abs, "c.pem"),
				TLSKeyFile:      filepath.Join(abs, "k.pem"),
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, doc("nats:\n"+tt.nats, ""), dir)
			got := cfg.NATS
			assert.Equal(t, tt.want, config.NATS{
				StoreDir: got.StoreDir, CredentialsDir: got.CredentialsDir, CredentialsFile: got.CredentialsFile,
				TLSCAFile: got.TLSCAFile, TLSCertFile: got.TLSCertFile, TLSKeyFile: got.TLSKeyFile,
			})
			wantRoles := tt.want.CredentialsDir
			if wantRoles == "" {
				wantRoles = filepath.Join(tt.want.StoreDir, "credentials")
			}
			assert.Equal(t, wantRoles, got.RolesDir())
		})
	}
}

// validConfig returns a valid configuration: apps[0] archive, apps[1] zone.
func validConfig(tb testing.TB) *config.Config {
	tb.Helper()
	return mustParse(tb, doc("", zoneApp), "")
}

func TestConfig_Validate(t *testing.T) {
	external := func(c *config.Config) { c.NATS.URL = "nats://n1:4222"; c.NATS.MaxStoreBytes = 0 }
	for _, tt := range []struct {
		name   string
		mutate func(c *config.Config)
		want   string // "" for no error
	}{
		{name: "OK", mutate: func(*config.Config) {}},
		{name: "OKExternal", mutate: external},
		{name: "OKExternalReplicas", mutate: func(c *config.Config) { external(c); c.NATS.Replicas = 3 }},
		{name: "OKHitsDiscardOld", mutate: func(c *config.Config) { c.NATS.HitsDiscard = "old" }},
		{"ErrMaxStoreExternal", func(c *config.Config) { external(c); c.NATS.MaxStoreBytes = 1 << 30 }, "nats.max_store_bytes: only valid when url is empty"},
		{"ErrMaxStoreBelowLimits", func(c *config.Config) { c.NATS.MaxStoreBytes = 800 << 20 },
			"nats.max_store_bytes: must be at least the sum of the stream and bucket limits (901775360)"},
		{"ErrCallbacksMaxBytes", func(c *config.Config) { c.NATS.CallbacksMaxBytes = 1000 }, "nats.callbacks_max_bytes: must be at least 1 MiB (1048576)"},
		{"ErrHitsMaxBytes", func(c *config.Config) { c.NATS.HitsMaxBytes = 0 }, "nats.hits_max_bytes: must be at least 1 MiB (1048576)"},
		{"ErrDeadLettersMaxBytes", func(c *config.Config) { c.NATS.DeadLettersMaxBytes = -1 }, "nats.dead_letters_max_bytes: must be at least 1 MiB (1048576)"},
		{"ErrKVMaxBytes", func(c *config.Config) { c.NATS.KVMaxBytes = 1024 }, "nats.kv_max_bytes: must be at least 64 KiB (65536)"},
		{"ErrHitsDiscard", func(c *config.Config) { c.NATS.HitsDiscard = "oldest" }, `nats.hits_discard: must be "new" or "old"`},
		{"ErrHitsMaxMsgSize", func(c *config.Config) { c.NATS.HitsMaxMsgSize = 100 }, "nats.hits_max_msg_size: must be at least 64 KiB (65536)"},
		{name: "OKTimestampWindowOff", mutate: func(c *config.Config) { c.HTTP.TimestampWindow = 0 }},

		{"ErrHTTPListen", func(c *config.Config) { c.HTTP.Listen = "8080" }, "http.listen: must be host:port"},
		{"ErrMaxBodyLow", func(c *config.Config) { c.HTTP.MaxBodyBytes = 1023 }, "http.max_body_bytes: must be between 1024 and 16777216"},
		{"ErrMaxBodyHigh", func(c *config.Config) { c.HTTP.MaxBodyBytes = 16777217 }, "http.max_body_bytes: must be between 1024 and 16777216"},
		{"ErrAckTimeoutZero", func(c *config.Config) { c.HTTP.AckTimeout = 0 }, "http.ack_timeout: must be greater than 0 and less than 5s"},
		{"ErrAckTimeout5s", func(c *config.Config) { c.HTTP.AckTimeout = 5 * time.Second }, "http.ack_timeout: must be greater than 0 and less than 5s"},
		{"ErrTimestampWindow", func(c *config.Config) { c.HTTP.TimestampWindow = -time.Second }, "http.timestamp_window: must not be negative"},
		{"ErrShutdownTimeout", func(c *config.Config) { c.HTTP.ShutdownTimeout = 0 }, "http.shutdown_timeout: must be greater than 0"},
		{"ErrMaxConnections", func(c *config.Config) { c.HTTP.MaxConnections = 0 }, "http.max_connections: must be between 1 and 1048576"},
		{"ErrIdleTimeout", func(c *config.Config) { c.HTTP.IdleTimeout = 500 * time.Millisecond }, "http.idle_timeout: must be at least 1s"},
		{"ErrAdminMaxConnections", func(c *config.Config) { c.Admin.MaxConnections = 0 }, "admin.max_connections: must be between 1 and 1048576"},
		{name: "OKAllowedHosts", mutate: func(c *config.Config) {
			c.Admin.AllowedHosts = []string{"receiver-1", "10.0.0.5", "[fd00::5]", "fd00::5"}
		}},
		{"ErrAllowedHostPort", func(c *config.Config) { c.Admin.AllowedHosts = []string{"receiver-1:9090"} }, "admin.allowed_hosts[0]: must be a host name or IP address without port"},
		{"ErrAllowedHostEmpty", func(c *config.Config) { c.Admin.AllowedHosts = []string{"ok", ""} }, "admin.allowed_hosts[1]: must be a host name or IP address without port"},
		{"ErrAllowedHostURL", func(c *config.Config) { c.Admin.AllowedHosts = []string{"http://x"} }, "admin.allowed_hosts[0]: must be a host name or IP address without port"},

		{"ErrNATSURL", func(c *config.Config) { c.NATS.URL = "nats://n1:4222,nats://" }, "nats.url: must be a comma-separated list of URLs with a host"},
		{"ErrStoreDir", func(c *config.Config) { c.NATS.StoreDir = "" }, "nats.store_dir: required when url is empty"},
		{"ErrListenWithURL", func(c *config.Config) { external(c); c.NATS.Listen = "127.0.0.1:4222" }, "nats.listen: must be empty when url is set"},
		{"ErrListen", func(c *config.Config) { c.NATS.Listen = "4222" }, "nats.listen: must be host:port"},
		{"ErrSubjectPrefixEmpty", func(c *config.Config) { c.NATS.SubjectPrefix = "" }, "nats.subject_prefix: must be tokens of letters, digits, '_' or '-' separated by '.'"},
		{"ErrSubjectPrefixDots", func(c *config.Config) { c.NATS.SubjectPrefix = "a..b" }, "nats.subject_prefix: must be tokens of letters, digits, '_' or '-' separated by '.'"},
		{"ErrSubjectPrefixWildcard", func(c *config.Config) { c.NATS.SubjectPrefix = "wecom.>" }, "nats.subject_prefix: must be tokens of letters, digits, '_' or '-' separated by '.'"},
		{"ErrReplicasZero", func(c *config.Config) { c.NATS.Replicas = 0 }, "nats.replicas: must be between 1 and 5"},
		{"ErrReplicasSix", func(c *config.Config) { external(c); c.NATS.Replicas = 6 }, "nats.replicas: must be between 1 and 5"},
		{"ErrReplicasEmbedded", func(c *config.Config) { c.NATS.Replicas = 3 }, "nats.replicas: must be 1 when url is empty"},
		{"ErrSyncAlwaysWithURL", func(c *config.Config) { external(c); c.NATS.SyncAlways = true }, "nats.sync_always: must be false when url is set"},
		{"ErrCredentialsDirExternal", func(c *config.Config) { external(c); c.NATS.CredentialsDir = "/creds" }, "nats.credentials_dir: only valid when url is empty"},
		{"ErrCredentialsEmbedded", func(c *config.Config) { c.NATS.CredentialsFile = "/n.creds" }, "nats.credentials_file: only valid when url is set"},
		{"ErrTLSCAEmbedded", func(c *config.Config) { c.NATS.TLSCAFile = "/ca.pem" }, "nats.tls_ca_file: only valid when url is set"},
		{"ErrTLSCertMissing", func(c *config.Config) { external(c); c.NATS.TLSKeyFile = "/k.pem" }, "nats.tls_cert_file: required when tls_key_file is set"},
		{"ErrTLSKeyMissing", func(c *config.Config) { external(c); c.NATS.TLSCertFile = "/c.pem" }, "nats.tls_key_file: required when tls_cert_file is set"},
		{"ErrConnectTimeout", func(c *config.Config) { c.NATS.ConnectTimeout = 0 }, "nats.connect_timeout: must be greater than 0"},
		{"ErrSetupTimeout", func(c *config.Config) { c.NATS.SetupTimeout = time.Second }, "nats.setup_timeout: must be at least connect_timeout"},
		{"ErrPingInterval", func(c *config.Config) { c.NATS.PingInterval = 0 }, "nats.ping_interval: must be at least 100ms"},
		{"ErrMaxPingsOutstanding", func(c *config.Config) { c.NATS.MaxPingsOutstanding = 0 }, "nats.max_pings_outstanding: must be at least 1"},
		{"ErrCallbackMaxAge", func(c *config.Config) { c.NATS.CallbackMaxAge = 59 * time.Minute }, "nats.callback_max_age: must be at least 1h"},
		{"ErrDeadLetterMaxAge", func(c *config.Config) { c.NATS.DeadLetterMaxAge = 59 * time.Minute }, "nats.dead_letter_max_age: must be at least 1h"},
		{"ErrDuplicateWindowZero", func(c *config.Config) { c.NATS.DuplicateWindow = 0 }, "nats.duplicate_window: must be greater than 0"},
		{"ErrDuplicateWindowLong", func(c *config.Config) { c.NATS.DuplicateWindow = 73 * time.Hour }, "nats.duplicate_window: must not exceed callback_max_age"},
		{"ErrDuplicateWindowUnderReplayWindow", func(c *config.Config) { c.NATS.DuplicateWindow = 30 * time.Minute }, "nats.duplicate_window: must be at least http.timestamp_window"},
		{"ErrReadyGrace", func(c *config.Config) { c.HTTP.ReadyGrace = time.Minute }, "http.ready_grace: must be at least 0s and less than shutdown_timeout"},
		{"ErrPageSize", func(c *config.Config) { c.Fetch.PageSize = 1001 }, "fetch.page_size: must be between 1 and 1000"},
		{"ErrPollInterval", func(c *config.Config) { c.Fetch.PollInterval = time.Second }, "fetch.poll_interval: must be 0 (off) or at least min_poll_interval (1m0s)"},
		{name: "OKPollIntervalLowered", mutate: func(c *config.Config) { c.Fetch.MinPollInterval = time.Second; c.Fetch.PollInterval = 2 * time.Second }},
		{"ErrPollIntervalUnderLowered", func(c *config.Config) { c.Fetch.MinPollInterval = 2 * time.Second; c.Fetch.PollInterval = time.Second }, "fetch.poll_interval: must be 0 (off) or at least min_poll_interval (2s)"},
		{"ErrMinPollInterval", func(c *config.Config) { c.Fetch.MinPollInterval = 500 * time.Millisecond }, "fetch.min_poll_interval: must be at least 1s"},
		{"ErrTokenless", func(c *config.Config) { c.Fetch.TokenlessPerMinute = 0 }, "fetch.tokenless_per_minute: must be at least 1"},
		{"ErrLeaseTTL", func(c *config.Config) { c.Fetch.LeaseTTL = time.Second }, "fetch.lease_ttl: must be at least 3s"},
		{"ErrHitsMaxAge", func(c *config.Config) { c.Fetch.HitsMaxAge = time.Minute }, "fetch.hits_max_age: must be at least 1h"},
		{"ErrHitsDupWindow", func(c *config.Config) { c.Fetch.HitsDuplicateWindow = 0 }, "fetch.hits_duplicate_window: must be greater than 0"},

		{name: "OKAdminOff", mutate: func(c *config.Config) { c.Admin.Listen = "" }},
		{name: "OKAdminToken", mutate: func(c *config.Config) { c.Admin.Token = config.Secret(strings.Repeat("t", 16)) }},
		{"ErrAdminListen", func(c *config.Config) { c.Admin.Listen = "9090" }, "admin.listen: must be host:port, or empty to turn the admin listener off"},
		{"ErrAdminTokenShort", func(c *config.Config) { c.Admin.Token = config.Secret(strings.Repeat("t", 15)) }, "admin.token: must be at least 16 characters"},

		{"ErrLogLevel", func(c *config.Config) { c.Log.Level = "trace" }, "log.level: must be one of debug, info, warn, error"},
		{"ErrLogFormat", func(c *config.Config) { c.Log.Format = "text" }, "log.format: must be json or console"},
		{"ErrMemoryLimit", func(c *config.Config) { c.MemoryLimitBytes = -1 }, "memory_limit_bytes: must not be negative"},
		{"ErrLogAcceptedPerSecond", func(c *config.Config) { c.Log.AcceptedPerSecond = -1 }, "log.accepted_per_second: must not be negative"},

		{"ErrNoApps", func(c *config.Config) { c.Apps = nil }, "apps: at least one app is required"},
		{"ErrNameRequired", func(c *config.Config) { c.Apps[0].Name = "" }, "apps[0].name: required"},
		{"ErrNameChars", func(c *config.Config) { c.Apps[0].Name = "a/b" }, "apps[0].name: must be 1 to 64 letters, digits, '_' or '-'"},
		{"ErrNameLong", func(c *config.Config) { c.Apps[0].Name = strings.Repeat("a", 65) }, "apps[0].name: must be 1 to 64 letters, digits, '_' or '-'"},
		{"ErrNameUnique", func(c *config.Config) { c.Apps[1].Name = "a" }, "apps[1].name: must be unique"},
		{"ErrModeRequired", func(c *config.Config) { c.Apps[0].Mode = "" }, "apps[0].mode: required"},
		{"ErrMode", func(c *config.Config) { c.Apps[0].Mode = "selfbuilt" }, "apps[0].mode: must be archive or zone"},
		{"ErrTokenRequired", func(c *config.Config) { c.Apps[0].Token = "" }, "apps[0].token: required"},
		{"ErrTokenLong", func(c *config.Config) { c.Apps[0].Token = config.Secret(strings.Repeat("t", 33)) }, "apps[0].token: must be at most 32 characters"},
		{"ErrTokenChars", func(c *config.Config) { c.Apps[0].Token = "tok-en" }, "apps[0].token: must be letters and digits only"},
		{"ErrAESKeyRequired", func(c *config.Config) { c.Apps[0].EncodingAESKey = "" }, "apps[0].encoding_aes_key: required"},
		{"ErrAESKeyLength", func(c *config.Config) { c.Apps[0].EncodingAESKey = config.Secret(demoAESKey[:42]) }, "apps[0].encoding_aes_key: must be 43 characters"},
		{"ErrAESKeyChars", func(c *config.Config) { c.Apps[0].EncodingAESKey = config.Secret("+" + demoAESKey[1:]) }, "apps[0].encoding_aes_key: must be letters and digits only"},
		{"ErrReceiveID", func(c *config.Config) { c.Apps[0].ReceiveID = "" }, "apps[0].receive_id: required"},
		{"ErrAPIBaseURLRelative", func(c *config.Config) { c.Apps[0].APIBaseURL = "qyapi.weixin.qq.com" }, "apps[0].api_base_url: must be an absolute http(s) URL without query"},
		{"ErrAPIBaseURLScheme", func(c *config.Config) { c.Apps[0].APIBaseURL = "ftp://qyapi.weixin.qq.com" }, "apps[0].api_base_url: must be an absolute http(s) URL without query"},
		{"ErrAPIBaseURLQuery", func(c *config.Config) { c.Apps[0].APIBaseURL = "https://qyapi.weixin.qq.com?x=1" }, "apps[0].api_base_url: must be an absolute http(s) URL without query"},

		{"ErrSuiteIDRequired", func(c *config.Config) { c.Apps[0].SuiteID = "" }, "apps[0].suite_id: required when mode is archive"},
		{"ErrSuiteSecretRequired", func(c *config.Config) { c.Apps[0].SuiteSecret = "" }, "apps[0].suite_secret: required when mode is archive"},
		{"ErrCorpsRequired", func(c *config.Config) { c.Apps[0].Corps = nil }, "apps[0].corps: at least one corp is required when mode is archive (or set corps.encryption_keys)"},
		{name: "OKCorpsFromRegistry", mutate: func(c *config.Config) { withCorpKeys(c); c.Apps[0].Corps = nil }},
		{name: "OKCorpKeysRotating", mutate: func(c *config.Config) {
			withCorpKeys(c)
			c.Corps.EncryptionKeys["k2"] = config.Secret(base64.StdEncoding.EncodeToString(make([]byte, 32)))
		}},
		{"ErrCorpsCurrentKeyMissing", func(c *config.Config) { withCorpKeys(c); c.Corps.CurrentKey = "" }, "corps.current_key: required with corps.encryption_keys"},
		{"ErrCorpsCurrentKeyUnknown", func(c *config.Config) { withCorpKeys(c); c.Corps.CurrentKey = "k9" }, "corps.current_key: must be one of the ids in corps.encryption_keys"},
		{"ErrCorpsCurrentKeyWithoutKeys", func(c *config.Config) { c.Corps.CurrentKey = "k1" }, "corps.current_key: only valid with corps.encryption_keys"},
		{"ErrCorpsKeyShort", func(c *config.Config) {
			withCorpKeys(c)
			c.Corps.EncryptionKeys["k1"] = config.Secret(base64.StdEncoding.EncodeToString(make([]byte, 16)))
		}, "corps.encryption_keys.k1: must be standard base64 of 32 bytes (openssl rand -base64 32)"},
		{"ErrCorpsKeyNotBase64", func(c *config.Config) { withCorpKeys(c); c.Corps.EncryptionKeys["k1"] = "not base64!" },
			"corps.encryption_keys.k1: must be standard base64 of 32 bytes (openssl rand -base64 32)"},
		{"ErrCorpsKeyEmpty", func(c *config.Config) { withCorpKeys(c); c.Corps.EncryptionKeys["k1"] = "" },
			"corps.encryption_keys.k1: required (32 random bytes in base64: openssl rand -base64 32)"},
		{"ErrCorpsKeyID", func(c *config.Config) {
			withCorpKeys(c)
			c.Corps.EncryptionKeys["bad id"] = c.Corps.EncryptionKeys["k1"]
		},
			"corps.encryption_keys: key ids must be 1 to 64 letters, digits, '_' or '-'"},
		{"ErrMaxStoreBelowLimitsWithCorps", func(c *config.Config) { withCorpKeys(c); c.NATS.MaxStoreBytes = 901775360 },
			"nats.max_store_bytes: must be at least the sum of the stream and bucket limits (926941184)"},
		{"ErrCorpsMaxBytes", func(c *config.Config) { c.NATS.CorpsMaxBytes = 1024 }, "nats.corps_max_bytes: must be at least 64 KiB (65536)"},
		{"ErrCorpEventsMaxBytes", func(c *config.Config) { c.NATS.CorpEventsMaxBytes = 1 << 19 }, "nats.corp_events_max_bytes: must be at least 1 MiB (1048576)"},
		{"ErrCorpIDRequired", func(c *config.Config) { c.Apps[0].Corps[0].CorpID = "" }, "apps[0].corps[0].corp_id: required"},
		{"ErrCorpIDUnique", func(c *config.Config) {
			c.Apps[0].Corps = append(c.Apps[0].Corps, config.Corp{CorpID: "wwCorpABC123", PermanentCode: "p2"})
		}, "apps[0].corps[1].corp_id: must be unique"},
		{"ErrPermanentCode", func(c *config.Config) { c.Apps[0].Corps[0].PermanentCode = "" }, "apps[0].corps[0].permanent_code: required"},
		{"ErrArchiveCorpSecret", func(c *config.Config) { c.Apps[0].CorpSecret = "s" }, "apps[0].corp_secret: only valid when mode is zone"},
		{"ErrArchiveProgramID", func(c *config.Config) { c.Apps[0].ProgramID = "p" }, "apps[0].program_id: only valid when mode is zone"},
		{"ErrArchiveAbilities", func(c *config.Config) { c.Apps[0].Abilities = map[string]string{"search_msg": "x"} }, "apps[0].abilities: only valid when mode is zone"},
		{"ErrArchiveWrapAbilityIO", func(c *config.Config) { c.Apps[0].WrapAbilityIO = true }, "apps[0].wrap_ability_io: only valid when mode is zone"},

		{"ErrZoneCorpID", func(c *config.Config) { c.Apps[1].CorpID = "" }, "apps[1].corp_id: required when mode is zone"},
		{"ErrZoneCorpSecret", func(c *config.Config) { c.Apps[1].CorpSecret = "" }, "apps[1].corp_secret: required when mode is zone"},
		{"ErrZoneProgramID", func(c *config.Config) { c.Apps[1].ProgramID = "" }, "apps[1].program_id: required when mode is zone"},
		{"ErrZoneAbilityUnknown", func(c *config.Config) { c.Apps[1].Abilities["sync_msg"] = "invoke_sync_msg" },
			"apps[1].abilities.sync_msg: unknown operation (want one of get_hit_msg_list, create_rule, get_rule_list, get_rule_detail, update_rule, delete_rule, search_msg)"},
		{"ErrZoneAbilityEmpty", func(c *config.Config) { c.Apps[1].Abilities["search_msg"] = "" }, "apps[1].abilities.search_msg: must not be empty"},
		{"ErrZoneSuiteID", func(c *config.Config) { c.Apps[1].SuiteID = "s" }, "apps[1].suite_id: only valid when mode is archive"},
		{"ErrZoneSuiteSecret", func(c *config.Config) { c.Apps[1].SuiteSecret = "s" }, "apps[1].suite_secret: only valid when mode is archive"},
		{"ErrZoneCorps", func(c *config.Config) { c.Apps[1].Corps = []config.Corp{{CorpID: "c", PermanentCode: "p"}} }, "apps[1].corps: only valid when mode is archive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig(t)
			tt.mutate(cfg)
			err := cfg.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, config.ErrInvalid)
			assert.Contains(t, messages(err), tt.want)
			var fe *config.FieldError
			assert.ErrorAs(t, err, &fe)
		})
	}

	t.Run("CollectsAll", func(t *testing.T) {
		cfg := validConfig(t)
		cfg.HTTP.MaxBodyBytes = 0
		cfg.Log.Level = ""
		cfg.Apps[1].Corps = append(cfg.Apps[1].Corps, config.Corp{})
		assert.Equal(t, []string{
			"http.max_body_bytes: must be between 1024 and 16777216",
			"log.level: must be one of debug, info, warn, error",
			"apps[1].corps: only valid when mode is archive",
		}, messages(cfg.Validate()))
	})
}

func TestConfig_App(t *testing.T) {
	cfg := validConfig(t)
	app, ok := cfg.App("z")
	require.True(t, ok)
	assert.Equal(t, config.ModeZone, app.Mode)
	app.ProgramID = "changed"
	assert.Equal(t, "changed", cfg.Apps[1].ProgramID, "App returns a pointer into Apps")

	_, ok = cfg.App("missing")
	assert.False(t, ok)
	assert.Equal(t, []string{"a", "z"}, cfg.AppNames())
}

func TestNATS_URLs(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want []string
	}{
		{"", nil},
		{"nats://n1:4222", []string{"nats://n1:4222"}},
		{" nats://n1:4222 , tls://n2:4222,", []string{"nats://n1:4222", "tls://n2:4222"}},
	} {
		t.Run(tt.url, func(t *testing.T) {
			assert.Equal(t, tt.want, config.NATS{URL: tt.url}.URLs())
		})
	}
}

func TestSecret(t *testing.T) {
	t.Run("Redacted", func(t *testing.T) {
		s := config.Secret("hunter2")
		assert.Equal(t, "hunter2", s.Reveal())
		assert.Equal(t, "<redacted>", s.String())
		assert.Equal(t, `secret.Secret("<redacted>")`, fmt.Sprintf("%#v", s))
		b, err := json.Marshal(s)
		require.NoError(t, err)
		assert.JSONEq(t, `"<redacted>"`, string(b))
		b, err = s.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, "<redacted>", string(b))
		y, err := yaml.Marshal(map[string]config.Secret{"k": s})
		require.NoError(t, err)
		assert.Equal(t, "k: <redacted>\n", string(y))
	})

	t.Run("EmptyStaysEmpty", func(t *testing.T) {
		var s config.Secret
		assert.Empty(t, s.String())
		b, err := json.Marshal(s)
		require.NoError(t, err)
		assert.JSONEq(t, `""`, string(b))
	})

	t.Run("AppNeverPrints", func(t *testing.T) {
		secrets := []string{"tokenValue1", demoAESKey, "corp-secret-value", "suite-secret-value", "permanent-code-value"}
		app := config.App{
			Name: "a", Mode: config.ModeArchive,
			Token: config.Secret(secrets[0]), EncodingAESKey: config.Secret(secrets[1]),
			CorpSecret: config.Secret(secrets[2]), SuiteSecret: config.Secret(secrets[3]),
			Corps: []config.Corp{{CorpID: "c", PermanentCode: config.Secret(secrets[4])}},
		}
		j, err := json.Marshal(app)
		require.NoError(t, err)
		y, err := yaml.Marshal(app)
		require.NoError(t, err)
		cfg := config.Config{Apps: []config.App{app}}
		out := fmt.Sprintf("%v %+v %#v %v %+v %#v", app, app, app, &app, cfg, &cfg) +
			fmt.Sprintf("%s %q %v", app.Token, app.EncodingAESKey, app.Corps) + string(j) + string(y)
		for _, s := range secrets {
			assert.NotContains(t, out, s)
		}
		assert.Contains(t, out, "<redacted>")
	})

	t.Run("ErrorsNeverPrint", func(t *testing.T) {
		badToken := "bad-token-value!"
		_, err := config.Parse([]byte(doc("", "    corp_secret: ${CS}\n    receive_id: ${RID}\n")), "",
			env(map[string]string{"CS": "corp-secret-value"}))
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "corp-secret-value")

		cfg := validConfig(t)
		cfg.Apps[0].Token = config.Secret(badToken)
		err = cfg.Validate()
		require.Error(t, err)
		assert.NotContains(t, err.Error(), badToken)
	})
}

// TestParse_AllProblems: faults of every stage (unknown key, type,
// unset variable, rule) come back together, each a *FieldError with its
// path and line; a missing key is placed at its mapping.
func TestParse_AllProblems(t *testing.T) {
	data := `http:
  lsten: :8080
  ack_timeout: 5 minutes
  max_body_bytes: [1, 2]
log:
  level: loud
apps:
  - name: a
    mode: archive
    token: ${TOKEN}
    encoding_aes_key: tooshort
    corps: [{corp_id: c1, permanent_code: p1}]
`
	_, err := config.Parse([]byte(data), "", noEnv)
	require.ErrorIs(t, err, config.ErrInvalid)
	type problem struct {
		path string
		line int
	}
	var got []problem
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *config.FieldError
		require.ErrorAs(t, e, &fe)
		got = append(got, problem{fe.Path, fe.Line})
	}
	assert.ElementsMatch(t, []problem{
		{"http.lsten", 2},
		{"http.ack_timeout", 3},
		{"http.max_body_bytes", 4},
		{"apps[0].token", 10},
		{"log.level", 6},
		{"apps[0].encoding_aes_key", 11},
		{"apps[0].suite_id", 8},
		{"apps[0].suite_secret", 8},
	}, got, messages(err))
}

// TestParse_SampleSecrets: WeCom's published sample Token and EncodingAESKey
// are refused unless allow_sample_secrets is on, and the message says what
// to set.
func TestParse_SampleSecrets(t *testing.T) {
	sample := func(token, key string) string {
		return `
apps:
  - name: a
    mode: archive
    token: ` + token + `
    encoding_aes_key: ` + key + `
    suite_id: wwArchiveSuite01
    suite_secret: suite-secret-value
    corps: [{corp_id: wwCorpABC123, permanent_code: permanent-code-value}]
`
	}
	for _, v := range []testvectors.App{testvectors.V1, testvectors.V2} {
		t.Run("ErrSample/"+v.Token, func(t *testing.T) {
			_, err := config.Parse([]byte(sample(v.Token, v.EncodingAESKey)), "", noEnv)
			require.ErrorIs(t, err, config.ErrInvalid)
			msgs := messages(err)
			require.Len(t, msgs, 2)
			assert.Contains(t, msgs[0], "apps[0].token: is WeCom's published sample Token")
			assert.Contains(t, msgs[1], "apps[0].encoding_aes_key: is WeCom's published sample EncodingAESKey")
			for _, m := range msgs {
				assert.Contains(t, m, "allow_sample_secrets: true")
				assert.NotContains(t, m, v.Token, "no secret value in errors")
				assert.NotContains(t, m, v.EncodingAESKey, "no secret value in errors")
			}
		})
		t.Run("OKAllowed/"+v.Token, func(t *testing.T) {
			cfg, err := config.Parse([]byte("allow_sample_secrets: true\n"+sample(v.Token, v.EncodingAESKey)), "", noEnv)
			require.NoError(t, err)
			assert.True(t, cfg.AllowSampleSecrets)
			assert.True(t, config.SampleSecret(&cfg.Apps[0]))
		})
	}

	// The decoder ignores the last character's low two bits, so a sample
	// key spelt with another last character is the same AES key.
	for _, key := range []string{
		"jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2A", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2D",
		"6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUs", "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUv",
	} {
		t.Run("ErrSampleKeyRespelled/"+key[42:], func(t *testing.T) {
			want, err := base64.StdEncoding.DecodeString(testvectors.V1.EncodingAESKey + "=")
			if key[0] == '6' {
				want, err = base64.StdEncoding.DecodeString(testvectors.V2.EncodingAESKey + "=")
			}
			require.NoError(t, err)
			got, err := base64.StdEncoding.DecodeString(key + "=")
			require.NoError(t, err)
			require.Equal(t, want, got, "the same AES key")
			_, err = config.Parse([]byte(sample("Tk7pLm2Q", key)), "", noEnv)
			msgs := messages(err)
			require.Len(t, msgs, 1)
			assert.Contains(t, msgs[0], "apps[0].encoding_aes_key: is WeCom's published sample EncodingAESKey")
		})
	}

	t.Run("ErrOneOfTwo", func(t *testing.T) {
		_, err := config.Parse([]byte(sample("Tk7pLm2Q", testvectors.V1.EncodingAESKey)), "", noEnv)
		assert.Equal(t, []string{"apps[0].encoding_aes_key: is WeCom's published sample EncodingAESKey, with which anyone can encrypt callbacks: " +
			"set it to the app's EncodingAESKey from the WeCom console, preferably from the environment (${VAR}) " +
			"(allow_sample_secrets: true permits it, for the simulator and test rigs only) (line 6)"}, messages(err))
	})

	t.Run("ErrFromEnvNamesVariable", func(t *testing.T) {
		_, err := config.Parse([]byte(sample("${TOK}", "${KEY}")), "", env(map[string]string{
			"TOK": testvectors.V1.Token, "KEY": testvectors.V1.EncodingAESKey,
		}))
		msgs := messages(err)
		require.Len(t, msgs, 2)
		assert.Contains(t, msgs[0], "set TOK to the app's callback Token from the WeCom console")
		assert.Contains(t, msgs[1], "set KEY to the app's EncodingAESKey from the WeCom console")
	})

	t.Run("ErrEmptyEnvNamesVariable", func(t *testing.T) {
		_, err := config.Parse([]byte(sample("${TOK}", demoAESKey)), "", env(map[string]string{"TOK": ""}))
		assert.Equal(t, []string{"apps[0].token: required (set TOK, which is empty) (line 5)"}, messages(err))
	})

	t.Run("OKOwnValues", func(t *testing.T) {
		cfg, err := config.Parse([]byte(sample("Tk7pLm2Q", demoAESKey)), "", noEnv)
		require.NoError(t, err)
		assert.False(t, config.SampleSecret(&cfg.Apps[0]))
	})

	t.Run("LocalSimConfig", func(t *testing.T) {
		// The simulator's config loads as it is, with no environment.
		cfg, err := config.Load("../../configs/receiver.local-sim.yaml")
		require.NoError(t, err)
		assert.True(t, cfg.AllowSampleSecrets)
		assert.Equal(t, "http://127.0.0.1:8090", cfg.Apps[0].APIBaseURL)
		assert.Equal(t, "127.0.0.1:8080", cfg.HTTP.Listen)
	})
}

// withCorpKeys turns the corp registry on with one key, k1.
func withCorpKeys(c *config.Config) {
	c.Corps = config.Corps{
		EncryptionKeys: map[string]config.Secret{"k1": config.Secret(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))},
		CurrentKey:     "k1",
	}
}

// TestParse_CorpKeys: keys come from the environment, and neither an error
// nor the printed config shows them.
func TestParse_CorpKeys(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	require.NoError(t, err)
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	extra := "\ncorps:\n  encryption_keys:\n    k1: ${CORPKEY}\n  current_key: k1\n"
	vars := maps.Clone(exampleEnv)
	vars["CORPKEY"] = key

	t.Run("OK", func(t *testing.T) {
		cfg, err := config.Parse(append(slices.Clone(data), extra...), t.TempDir(), env(vars))
		require.NoError(t, err)
		assert.True(t, cfg.Corps.Enabled())
		assert.Equal(t, map[string]string{"k1": key}, cfg.Corps.Keys())
		assert.NotContains(t, fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg), key)
	})
	t.Run("ErrBadKeyNotEchoed", func(t *testing.T) {
		bad := maps.Clone(vars)
		bad["CORPKEY"] = "c2VjcmV0LWJ1dC1zaG9ydA=="
		_, err := config.Parse(append(slices.Clone(data), extra...), t.TempDir(), env(bad))
		require.ErrorIs(t, err, config.ErrInvalid)
		assert.Contains(t, err.Error(), "corps.encryption_keys.k1: must be standard base64 of 32 bytes")
		assert.NotContains(t, err.Error(), bad["CORPKEY"])
	})
}

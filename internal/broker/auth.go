package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Authentication of the embedded server's TCP listener.
//
// Every TCP client logs in with an nkey: the server holds only public keys,
// and a client proves it holds the seed by signing a nonce, so no secret
// crosses the wire (the listener has no TLS) and the server's configuration
// holds nothing worth stealing. Passwords would cross the wire in clear and
// would still need a bcrypt hash kept next to them.
//
// Each role (Options.Roles) has its seed in <CredentialsDir>/<role>.nk,
// created with mode 0600 on the first start and read on every later one, so
// a copied file keeps working across restarts; deleting it and restarting
// revokes it. The receiver's own in-process connection logs in with a key
// made afresh at every start, kept in memory, and valid for in-process
// connections only: there is no file to steal, and no TCP client can use it.
//
// The receiver, and every role without an Account, use nats-server's global
// account; a role with an Account logs in to that account instead, which
// reaches only what it imports from the receiver's (Account says why).

// Role is a TCP user of the embedded server: a name (the seed file's name),
// the account it logs in to, and what it may publish and subscribe to
// there. The callers decide the roles; this package only enforces them.
type Role struct {
	// Name is letters, digits, '-' or '_'; the seed is <Name>.nk.
	Name string
	// Account, when set, puts the role in an account of its own instead of
	// the receiver's. Nil: the receiver's account, whose streams and
	// buckets the role then reaches as far as Permissions allow.
	Account *Account
	// Permissions are the NATS publish and subscribe permissions inside
	// the role's account; nil means everything.
	Permissions *server.Permissions
}

// Account is a NATS account apart from the receiver's, for roles that must
// not be able to reach the receiver's data in any way.
//
// Permissions alone cannot give that: nats-server does not check a
// request's reply subject against the requester's permissions (only
// replies starting with "$JS." are refused), and it publishes its
// JetStream API answers to that reply subject inside the requester's
// account, where a stream or KV bucket listening on the subject stores
// them. In an account of its own, a client's requests to the receiver's
// account cross an import, their answers come back to the client's
// account, and nothing there stores anything: the account has no
// JetStream.
//
// The account sees exactly what it imports from the receiver's account,
// which exports those subjects to it alone.
type Account struct {
	// Name is the account's name: letters, digits, '-' or '_', not the
	// receiver's account ($G) or the system account ($SYS).
	Name string
	// Services are request subjects of the receiver's account that the
	// account may send requests to; the answers come back to it.
	Services []Service
	// Streams are subjects whose messages, published in the receiver's
	// account, the account receives under the same subjects.
	Streams []string
}

// Service is a request subject imported into an Account.
type Service struct {
	// Subject is the subject in the receiver's account (wildcards allowed).
	Subject string
	// As is the subject the account's clients send to, with the same
	// wildcards in the same places; empty means Subject.
	As string
	// Streamed: one request may get many answers (a JetStream pull
	// request gets its messages as answers); otherwise exactly one.
	Streamed bool
}

// SeedExt ends every role's seed file name.
const SeedExt = ".nk"

// ErrCredentials: a role's seed file is unusable (unreadable, not a user
// seed, or readable by other users).
var ErrCredentials = errors.New("broker: nats credentials")

// SeedFile is where the seed of role lives in dir.
func SeedFile(dir, role string) string { return filepath.Join(dir, role+SeedExt) }

// credsOption turns a credentials file into the connection option that
// uses it: a .creds file (a user JWT and its seed, decentralized auth) or a
// bare nkey seed file, as the embedded server writes. The file is read here
// only to tell which; nats.go reads it again at each connect, so a rotated
// file takes effect on the next reconnect.
func credsOption(path string) (nats.Option, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	defer wipe(data)
	if bytes.Contains(data, []byte("BEGIN NATS USER JWT")) {
		return nats.UserCredentials(path), nil
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: neither a .creds file nor an nkey seed: %w", ErrCredentials, path, err)
	}
	kp.Wipe()
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCredentials, path, err)
	}
	return opt, nil
}

// authUsers makes the users of an embedded server that listens: a fresh
// in-process-only key for the receiver itself (returned, to log in with),
// and one per role from its seed file in dir, created if missing, in the
// role's account from accounts (by name; see roleAccounts).
func authUsers(dir string, roles []Role, accounts map[string]*server.Account) ([]*server.NkeyUser, nkeys.KeyPair, error) {
	if dir == "" {
		return nil, nil, fmt.Errorf("%w: an embedded server that listens needs a credentials dir", ErrInvalidOption)
	}
	self, err := nkeys.CreateUser()
	if err != nil {
		return nil, nil, fmt.Errorf("broker: create receiver nkey: %w", err)
	}
	selfPub, err := self.PublicKey()
	if err != nil {
		return nil, nil, fmt.Errorf("broker: receiver nkey: %w", err)
	}
	users := []*server.NkeyUser{{
		Nkey:                   selfPub,
		AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}},
	}}
	// 0700: the directory's listing is nobody else's business either.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	seen := map[string]bool{}
	for _, r := range roles {
		if !validRoleName(r.Name) || seen[r.Name] {
			return nil, nil, fmt.Errorf("%w: role name %q", ErrInvalidOption, r.Name)
		}
		seen[r.Name] = true
		pub, err := loadOrCreateSeed(SeedFile(dir, r.Name))
		if err != nil {
			return nil, nil, err
		}
		u := &server.NkeyUser{Nkey: pub, Permissions: r.Permissions}
		if r.Account != nil {
			if u.Account = accounts[r.Account.Name]; u.Account == nil {
				return nil, nil, fmt.Errorf("%w: role %s: account %q not set up", ErrInvalidOption, r.Name, r.Account.Name)
			}
		}
		users = append(users, u)
	}
	return users, self, nil
}

// receiverAccount is the account the receiver and the roles without an
// Account use: nats-server's global account, where a server without
// accounts keeps everything, so a store written before roles had accounts
// is read as it is.
const receiverAccount = "$G"

// roleAccounts makes the server accounts the roles name, and the
// receiver's account with the exports they import; nil and no accounts
// when no role has an account of its own. Roles may share an account if
// they describe it alike.
func roleAccounts(roles []Role) (*server.Account, map[string]*server.Account, error) {
	defs, err := accountDefs(roles)
	if err != nil || len(defs) == 0 {
		return nil, nil, err
	}
	// Accounts made here, before the server, are copied into it by
	// server.NewServer, which resolves imports and exports by name: as a
	// configuration file's accounts are.
	recv := server.NewAccount(receiverAccount)
	accounts := map[string]*server.Account{}
	for _, d := range defs {
		accounts[d.Name] = server.NewAccount(d.Name)
	}
	if err := addExports(recv, defs, accounts); err != nil {
		return nil, nil, err
	}
	if err := addImports(recv, defs, accounts); err != nil {
		return nil, nil, err
	}
	return recv, accounts, nil
}

// accountDefs are the accounts the roles name, each once, in the order
// the roles first name them, so that exports and imports are made in the
// same order on every start. Two roles that describe one account
// differently are an error: neither description could be honoured whole.
func accountDefs(roles []Role) ([]*Account, error) {
	byName := map[string]*Account{}
	var defs []*Account
	for _, r := range roles {
		a := r.Account
		if a == nil {
			continue
		}
		if prev, ok := byName[a.Name]; ok {
			if !reflect.DeepEqual(prev, a) {
				return nil, fmt.Errorf("%w: account %q described differently by two roles", ErrInvalidOption, a.Name)
			}
			continue
		}
		if !validRoleName(a.Name) || a.Name == server.DEFAULT_SYSTEM_ACCOUNT {
			return nil, fmt.Errorf("%w: account name %q", ErrInvalidOption, a.Name)
		}
		byName[a.Name] = a
		defs = append(defs, a)
	}
	return defs, nil
}

// addExports exports from recv every subject that the accounts of defs
// import: one export per subject, to every account that imports it. A
// service is streamed or not for all its importers alike, since the
// export, not the import, carries how many answers a request gets.
func addExports(recv *server.Account, defs []*Account, accounts map[string]*server.Account) error {
	type export struct {
		streamed bool
		to       []*server.Account
	}
	services, streams := map[string]*export{}, map[string]*export{}
	var serviceOrder, streamOrder []string
	for _, d := range defs {
		acc := accounts[d.Name]
		for _, sv := range d.Services {
			e := services[sv.Subject]
			if e == nil {
				e = &export{streamed: sv.Streamed}
				services[sv.Subject] = e
				serviceOrder = append(serviceOrder, sv.Subject)
			} else if e.streamed != sv.Streamed {
				return fmt.Errorf("%w: service %s both streamed and not", ErrInvalidOption, sv.Subject)
			}
			e.to = append(e.to, acc)
		}
		for _, subj := range d.Streams {
			e := streams[subj]
			if e == nil {
				e = &export{}
				streams[subj] = e
				streamOrder = append(streamOrder, subj)
			}
			e.to = append(e.to, acc)
		}
	}
	for _, subj := range serviceOrder {
		e := services[subj]
		rt := server.Singleton
		if e.streamed {
			rt = server.Streamed
		}
		if err := recv.AddServiceExportWithResponse(subj, rt, e.to); err != nil {
			return fmt.Errorf("%w: export %s: %w", ErrInvalidOption, subj, err)
		}
	}
	for _, subj := range streamOrder {
		if err := recv.AddStreamExport(subj, streams[subj].to); err != nil {
			return fmt.Errorf("%w: export %s: %w", ErrInvalidOption, subj, err)
		}
	}
	return nil
}

// addImports imports into each account of defs what it names from recv:
// services under their As subject (default the same subject), streams
// under the same subjects.
func addImports(recv *server.Account, defs []*Account, accounts map[string]*server.Account) error {
	for _, d := range defs {
		acc := accounts[d.Name]
		for _, sv := range d.Services {
			as := sv.As
			if as == "" {
				as = sv.Subject
			}
			if err := acc.AddServiceImport(recv, as, sv.Subject); err != nil {
				return fmt.Errorf("%w: account %s: import %s as %s: %w", ErrInvalidOption, d.Name, sv.Subject, as, err)
			}
		}
		for _, subj := range d.Streams {
			if err := acc.AddStreamImport(recv, subj, ""); err != nil {
				return fmt.Errorf("%w: account %s: import %s: %w", ErrInvalidOption, d.Name, subj, err)
			}
		}
	}
	return nil
}

// loadOrCreateSeed returns the public key of the user seed at path, first
// writing a new seed there if there is none. A file that others may read
// is refused rather than used: the key may have leaked.
func loadOrCreateSeed(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createSeed(path)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	defer wipe(data)
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%w: %s has mode %04o: others may have read it; delete it to make a new one, or chmod 600 it",
			ErrCredentials, path, st.Mode().Perm())
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w (delete it to make a new one)", ErrCredentials, path, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("%w: %s: not an nkey user seed (delete it to make a new one)", ErrCredentials, path)
	}
	return pub, nil
}

// createSeed writes a new user seed to path, mode 0600, and returns its
// public key. It writes a temporary file and links it into place, so a
// crash leaves either no file or a whole one, and a seed another process
// wrote meanwhile (receivers sharing a credentials dir, started together)
// is kept and used rather than replaced under the other's feet.
func createSeed(path string) (string, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", fmt.Errorf("broker: create nkey: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return "", fmt.Errorf("broker: create nkey: %w", err)
	}
	defer wipe(seed)
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("broker: create nkey: %w", err)
	}
	role := filepath.Base(path)
	role = role[:len(role)-len(SeedExt)]
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# NATS nkey seed of the %q role of the WeCom receiver's embedded server.\n", role)
	fmt.Fprintf(&buf, "# Public key %s. Keep this file private (mode 0600).\n", pub)
	buf.WriteString("# nats.go: nats.NkeyOptionFromSeed(file); nats CLI: --nkey file; receiver: -creds file.\n")
	buf.WriteString("-----BEGIN USER NKEY SEED-----\n")
	buf.Write(seed)
	buf.WriteString("\n------END USER NKEY SEED------\n")
	defer wipe(buf.Bytes())

	// CreateTemp makes the file 0600.
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	tmp := f.Name()
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, path)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			// A file system without hard links: rename, which replaces.
			err = os.Rename(tmp, path)
		}
	}
	_ = os.Remove(tmp)
	if errors.Is(err, fs.ErrExist) {
		return loadOrCreateSeed(path)
	}
	if err != nil {
		return "", fmt.Errorf("%w: write %s: %w", ErrCredentials, path, err)
	}
	return pub, nil
}

func validRoleName(s string) bool {
	return s != "" && len(s) <= 64 && !slices.ContainsFunc([]byte(s), func(c byte) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	})
}

// wipe overwrites key material once it is no longer needed.
func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}

// Package cli is the receiver's command line: the command table and its
// convention (Run, Env, Spec, exit codes, help that lists every flag with
// its default and the environment a command reads), and every operator
// command, one file each (rules one file per verb): serve, check-config,
// backfill, rules, search, tail, status, creds, dlq, corps, version, help.
// The convention's parts (durations with a day unit, the -o formats, the
// version from the build info, when to use colour) serve cmd/demo,
// cmd/wecomsim and cmd/loadgen too. It leaves running the service to
// internal/app (serve only reads its flags, sets up the process and calls
// app.Main), printing to internal/cli/format, and the mapping from
// configuration to the stages and what a command shares with the service to
// internal/app.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
)

// Exit codes every command keeps. A command may add its own above these
// (receiver status: 3 needs attention, 4 cannot tell).
const (
	ExitOK      = 0 // done
	ExitFailure = 1 // it went wrong: a bad config, an unreachable server, an error from WeCom
	ExitUsage   = 2 // the command line is wrong: unknown command or flag, a bad flag value; nothing was done
)

// ErrUsage marks a command-line mistake: exit code 2.
var ErrUsage = errors.New("usage")

// ExitCode is the exit code of a program with a single command (cmd/demo,
// cmd/wecomsim) that ended with err, which it reports on stderr under the
// program's name prog: 0 done (or -h), 2 a usage error, with a pointer to
// prog -h, 1 any other error.
func ExitCode(stderr io.Writer, prog string, err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, ErrUsage):
		_, _ = fmt.Fprintf(stderr, "%s: %v\nRun \"%s -h\" for its flags.\n", prog, err, prog)
		return ExitUsage
	}
	_, _ = fmt.Fprintf(stderr, "%s: %v\n", prog, err)
	return ExitFailure
}

// ParseDuration is time.ParseDuration with a day unit, d (24h), which may
// lead a compound duration: 5d, 1.5d, 1d12h, 90m. Days are 24 hours, not
// calendar days: a duration, not a date.
func ParseDuration(s string) (time.Duration, error) {
	if !strings.Contains(s, "d") {
		return time.ParseDuration(s)
	}
	orig := s
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	// The days come first ("1d12h"); what follows is Go's syntax.
	i := strings.IndexByte(s, 'd')
	days, err := strconv.ParseFloat(s[:i], 64)
	if err != nil || s[:i] == "" || strings.ContainsAny(s[:i], "eE+-") {
		return 0, fmt.Errorf("time: invalid duration %q", orig)
	}
	d := time.Duration(days * float64(24*time.Hour))
	if rest := s[i+1:]; rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 || rest[0] == '+' {
			return 0, fmt.Errorf("time: invalid duration %q", orig)
		}
		d += r
	}
	if neg {
		d = -d
	}
	return d, nil
}

// Duration is a time.Duration flag that takes ParseDuration's syntax.
type Duration struct{ p *time.Duration }

// DurationVar defines a duration flag that accepts days (5d) as well.
func DurationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var(Duration{p}, name, usage)
}

func (d Duration) String() string {
	if d.p == nil {
		return "0s"
	}
	return d.p.String()
}

func (d Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 90s, 15m, 6h or 5d")
	}
	*d.p = v
	return nil
}

// Output is the -o flag: a table (or plain lines) for people, JSON for
// scripts. "text" is taken as table: tail and loadgen called it that.
type Output string

// The output formats.
const (
	Table Output = "table"
	JSON  Output = "json"
)

func (o *Output) String() string { return string(*o) }

func (o *Output) Set(s string) error {
	switch f := Output(s); f {
	case Table, JSON:
		*o = f
		return nil
	case "text":
		*o = Table
		return nil
	}
	return errors.New(`want "table" or "json"`)
}

// OutputVar defines -o, table by default.
func OutputVar(fs *flag.FlagSet, p *Output) {
	*p = Table
	fs.Var(p, "o", "output `format`: table (for people) or json (for scripts)")
}

// Version is what the build info says about the running binary.
type Version struct {
	// Module is the main module's version: a tag (v1.2.3), a pseudo-version
	// that go build derives from the VCS (v0.0.0-20261127…-abcdef123456),
	// or "(devel)" when there was none.
	Module   string `json:"version"`
	Revision string `json:"revision,omitempty"` // VCS commit
	Time     string `json:"time,omitempty"`     // commit time, RFC 3339
	Modified bool   `json:"modified,omitempty"` // built from a work tree with changes
	Go       string `json:"go"`
}

// ReadVersion reads the binary's version from its build info; override,
// when not "", replaces the module version (a release build's
// -ldflags -X value).
func ReadVersion(override string) Version {
	v := Version{Module: "(devel)"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Go = bi.GoVersion
		if bi.Main.Version != "" {
			v.Module = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if override != "" {
		v.Module = override
	}
	return v
}

// String is the version line: "v1.2.3 (rev 0123456789ab, modified, go1.26.8)".
func (v Version) String() string {
	var extra []string
	if v.Revision != "" {
		r := v.Revision
		if len(r) > 12 {
			r = r[:12]
		}
		extra = append(extra, "rev "+r)
	}
	if v.Modified {
		extra = append(extra, "modified")
	}
	if v.Go != "" {
		extra = append(extra, v.Go)
	}
	if len(extra) == 0 {
		return v.Module
	}
	return v.Module + " (" + strings.Join(extra, ", ") + ")"
}

// IsTerminal reports whether w is a terminal: progress bars, colour and
// console logs are for people watching one, plain lines for the rest.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// Colour reports whether to colour output to w: only on a terminal, and
// not when NO_COLOR is set to anything but "" (no-color.org).
func Colour(w io.Writer, getenv func(string) string) bool {
	return IsTerminal(w) && getenv("NO_COLOR") == ""
}

// EnvVar is an environment variable a command reads, for its help.
type EnvVar struct{ Name, Use string }

// Usage is a command's help: how to call it, what it does, the
// environment it reads. PrintUsage adds every flag.
type Usage struct {
	Synopsis string   // "receiver serve [flags]"
	Help     string   // paragraphs; may be ""
	Env      []EnvVar // the environment variables it reads
}

// PrintUsage writes u and every flag of fs, each with its default, to w.
func PrintUsage(w io.Writer, fs *flag.FlagSet, u Usage) {
	var b strings.Builder
	b.WriteString("Usage: " + u.Synopsis + "\n")
	if u.Help != "" {
		b.WriteString("\n" + strings.TrimRight(u.Help, "\n") + "\n")
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\nFlags:\n")
		writeFlags(&b, fs)
	}
	if len(u.Env) > 0 {
		b.WriteString("\nEnvironment:\n")
		width := 0
		for _, e := range u.Env {
			width = max(width, len(e.Name))
		}
		for _, e := range u.Env {
			fmt.Fprintf(&b, "  %-*s  %s\n", width, e.Name, e.Use)
		}
	}
	_, _ = io.WriteString(w, b.String())
}

// writeFlags lists every flag like flag.PrintDefaults, but always with its
// default (PrintDefaults leaves out zero values, so a reader cannot tell a
// missing default from an empty one), and hides deprecated aliases (usage
// starting with "deprecated").
func writeFlags(b *strings.Builder, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if Hidden(f) {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		if _, ok := f.Value.(Duration); ok && name == "value" {
			name = "duration"
		}
		b.WriteString("  -" + f.Name)
		if name != "" {
			b.WriteString(" " + name)
		}
		b.WriteString("\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t"))
		b.WriteString(" " + DefaultText(f) + "\n")
	})
}

// DefaultText is how help shows a flag's default: quoted for a string,
// "none" when empty.
func DefaultText(f *flag.Flag) string {
	if f.DefValue == "" {
		return "(default: none)"
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if _, ok := g.Get().(string); ok {
			return "(default: " + strconv.Quote(f.DefValue) + ")"
		}
	}
	return "(default: " + f.DefValue + ")"
}

// Hidden reports a deprecated alias, which help does not list.
func Hidden(f *flag.Flag) bool { return strings.HasPrefix(f.Usage, "deprecated") }

// Parse parses args into fs with the convention: the flag package prints
// nothing (fs's output is discarded); -h, -help and --help return
// flag.ErrHelp for the caller to print help on stdout; any other mistake
// returns an error that wraps ErrUsage.
func Parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return err
	}
	return fmt.Errorf("%w: %w", ErrUsage, err)
}

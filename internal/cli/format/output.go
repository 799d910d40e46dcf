// Package format prints the receiver's command results: tables lined up
// for a terminal (Chinese characters count two columns), JSON lines for
// scripts, and hit events on one line for people. It leaves what to print,
// and where, to the commands (internal/cli).
package format

import (
	"encoding/json"
	"io"
	"strings"
)

// JSONLines writes one compact JSON document per line. HTML escaping is
// off: rule names and words are shown as typed, not as \u003c.
type JSONLines struct{ enc *json.Encoder }

// NewJSONLines writes to w.
func NewJSONLines(w io.Writer) JSONLines {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return JSONLines{enc: enc}
}

// Write writes v on a line of its own.
func (j JSONLines) Write(v any) error { return j.enc.Encode(v) }

// WriteJSONLines writes each item on a line of its own.
func WriteJSONLines[T any](w io.Writer, items []T) error {
	j := NewJSONLines(w)
	for _, v := range items {
		if err := j.Write(v); err != nil {
			return err
		}
	}
	return nil
}

// Table collects rows and prints them with the columns lined up for a
// terminal. Unlike text/tabwriter, which counts runes, it counts a Chinese
// character as the two columns it takes, so rule names line up.
type Table struct{ rows [][]string }

// Add adds a row.
func (t *Table) Add(cells ...string) { t.rows = append(t.rows, cells) }

// Write prints the rows, columns two spaces apart, the last one unpadded.
func (t *Table) Write(w io.Writer) error {
	var widths []int
	for _, row := range t.rows {
		for i, c := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], DisplayWidth(c))
		}
	}
	var b strings.Builder
	for _, row := range t.rows {
		for i, c := range row {
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-DisplayWidth(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// DisplayWidth is how many terminal columns s takes: two for East Asian
// wide and full-width characters, one for the rest (combining marks and
// emoji sequences are rare in rule names and not worth a dependency).
func DisplayWidth(s string) int {
	n := 0
	for _, r := range s {
		n++
		if wide(r) {
			n++
		}
	}
	return n
}

// wide reports East Asian wide and full-width runes (Unicode's ranges as
// Markus Kuhn's wcwidth has them).
func wide(r rune) bool {
	return r >= 0x1100 && (r <= 0x115f ||
		r >= 0x2e80 && r <= 0xa4cf && r != 0x303f ||
		r >= 0xac00 && r <= 0xd7a3 ||
		r >= 0xf900 && r <= 0xfaff ||
		r >= 0xfe30 && r <= 0xfe6f ||
		r >= 0xff00 && r <= 0xff60 ||
		r >= 0xffe0 && r <= 0xffe6 ||
		r >= 0x20000 && r <= 0x3fffd)
}

// Plural picks the noun for n: "1 problem", "2 problems".
func Plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

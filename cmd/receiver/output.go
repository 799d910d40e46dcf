package main

import (
	"encoding/json"
	"io"
	"strings"

	"github.com/wecomhit/wecomhit/internal/cli"
)

// outputFormat is the -o flag (cli.Output): a table for people, or JSON
// for scripts.
type outputFormat = cli.Output

const (
	outputTable = cli.Table
	outputJSON  = cli.JSON
)

// jsonLines writes one compact JSON document per line. HTML escaping is
// off: rule names and words are shown as typed, not as \u003c.
type jsonLines struct{ enc *json.Encoder }

func newJSONLines(w io.Writer) jsonLines {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return jsonLines{enc: enc}
}

func (j jsonLines) write(v any) error { return j.enc.Encode(v) }

// table collects rows and prints them with the columns lined up for a
// terminal. Unlike text/tabwriter, which counts runes, it counts a Chinese
// character as the two columns it takes, so rule names line up.
type table struct{ rows [][]string }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// write prints the rows, columns two spaces apart, the last one unpadded.
func (t *table) write(w io.Writer) error {
	var widths []int
	for _, row := range t.rows {
		for i, c := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], displayWidth(c))
		}
	}
	var b strings.Builder
	for _, row := range t.rows {
		for i, c := range row {
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-displayWidth(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// displayWidth is how many terminal columns s takes: two for East Asian
// wide and full-width characters, one for the rest (combining marks and
// emoji sequences are rare in rule names and not worth a dependency).
func displayWidth(s string) int {
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

// plural picks the noun for n: "1 problem", "2 problems".
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

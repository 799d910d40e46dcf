package wxml

import (
	"encoding/xml"
	"strings"
	"testing"
)

// stdFields reads the root's children with encoding/xml, for comparison.
func stdFields(doc string) ([]field, error) {
	d := xml.NewDecoder(strings.NewReader(doc))
	d.Strict = true
	var (
		out   []field
		depth int
		cur   *field
		text  strings.Builder
	)
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return out, nil
			}
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				out = append(out, field{Name: t.Name.Local})
				cur = &out[len(out)-1]
				text.Reset()
			} else if depth > 2 {
				cur.Nested = true
			}
		case xml.EndElement:
			if depth == 2 && !cur.Nested {
				cur.Value = text.String()
			}
			depth--
		case xml.CharData:
			if depth == 2 {
				text.Write(t)
			}
		}
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts,
// encoding/xml (strict) accepts too, with the same fields and values up to
// white space at the ends.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"<xml><A><![CDATA[x<y]]></A><B>12</B></xml>",
		"<?xml version=\"1.0\"?><xml>\n<A>a&lt;b&#20320;</A>\n<C><D>1</D></C></xml>",
		"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQ=]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>",
		"<!DOCTYPE x [<!ENTITY e 'x'>]><xml>&e;</xml>",
		"<xml a='1'><A/><!-- c --></xml>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		got, err := collect(doc)
		if err != nil {
			return
		}
		want, serr := stdFields(doc)
		if serr != nil {
			t.Fatalf("wxml accepted what encoding/xml rejects (%v): %q", serr, doc)
		}
		if len(got) != len(want) {
			t.Fatalf("fields: got %d, encoding/xml %d: %q", len(got), len(want), doc)
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Name != w.Name || g.Nested != w.Nested || strings.TrimSpace(g.Value) != strings.TrimSpace(w.Value) {
				t.Fatalf("field %d: got %+v, encoding/xml %+v: %q", i, g, w, doc)
			}
		}
	})
}

package wxml

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type field struct {
	Name, Value string
	Nested      bool
}

func collect(doc string) ([]field, error) {
	var out []field
	err := Parse(doc, func(name, value string, nested bool) error {
		out = append(out, field{name, value, nested})
		return nil
	})
	return out, err
}

func TestParse_OK(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []field
	}{
		{"CDATA", "<xml><A><![CDATA[x<y]]></A><B>12</B></xml>", []field{{"A", "x<y", false}, {"B", "12", false}}},
		{"Declaration", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><A>1</A></xml>\n", []field{{"A", "1", false}}},
		{"BOM", "\uFEFF<xml><A>1</A></xml>", []field{{"A", "1", false}}},
		{"Indented", "<xml>\n  <A>\n    <![CDATA[v]]>\n  </A>\n  <B> 7 </B>\n</xml>", []field{{"A", "v", false}, {"B", "7", false}}},
		{"Entities", "<xml><A>a&lt;b&amp;c&#20320;&#x597D;&quot;&apos;&gt;</A></xml>", []field{{"A", "a<b&c你好\"'>", false}}},
		{"Mixed", "<xml><A>pre <![CDATA[mid]]> post</A></xml>", []field{{"A", "pre mid post", false}}},
		{"CDATAKeepsSpace", "<xml><A><![CDATA[ v ]]></A></xml>", []field{{"A", " v ", false}}},
		{"Empty", "<xml><A></A><B/><C><![CDATA[]]></C></xml>", []field{{"A", "", false}, {"B", "", false}, {"C", "", false}}},
		{"Nested", "<xml><A><X>1</X><Y/></A><B>2</B></xml>", []field{{"A", "", true}, {"B", "2", false}}},
		{"Attributes", "<xml a='1'><A b=\"x&amp;y\" c = '2'>v</A></xml>", []field{{"A", "v", false}}},
		{"Comments", "<!-- c --><xml><!-- c --><A>1<!-- c -->2</A></xml><!-- c -->", []field{{"A", "12", false}}},
		{"SelfClosedRoot", "<xml/>", nil},
		{"UTF8", "<xml><Content>你好</Content></xml>", []field{{"Content", "你好", false}}},
		{"LineEndings", "<xml><A><![CDATA[a\r\nb\rc]]></A><B>x\r\ny</B></xml>", []field{{"A", "a\nb\nc", false}, {"B", "x\ny", false}}},
		{"EndTagSpace", "<xml><A>1</A ></xml >", []field{{"A", "1", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collect(tt.doc)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want error
	}{
		{"ErrDoctype", "<!DOCTYPE xml [<!ENTITY e \"x\">]><xml><A>&e;</A></xml>", ErrDoctype},
		{"ErrDoctypeAfterDecl", "<?xml version=\"1.0\"?><!DOCTYPE xml SYSTEM \"file:///etc/passwd\"><xml/>", ErrDoctype},
		{"ErrEntityDeclInside", "<xml><!ENTITY e \"x\"></xml>", ErrDoctype},
		{"ErrUndefinedEntity", "<xml><A>&e;</A></xml>", ErrEntity},
		{"ErrCDATAEndInText", "<xml><A>]]></A></xml>", ErrSyntax},
		{"ErrBareAmp", "<xml><A>a & b</A></xml>", ErrEntity},
		{"ErrBadCharRef", "<xml><A>&#0;</A></xml>", ErrEntity},
		{"ErrSurrogateRef", "<xml><A>&#xD800;</A></xml>", ErrEntity},
		{"ErrEntityInAttr", "<xml><A b='&e;'>1</A></xml>", ErrEntity},
		{"ErrEmpty", "", ErrSyntax},
		{"ErrNotXML", "1616140317555161061", ErrSyntax},
		{"ErrJSON", `{"a":1}`, ErrSyntax},
		{"ErrUnclosedRoot", "<xml><A>1</A>", ErrSyntax},
		{"ErrUnclosedChild", "<xml><A>1</xml>", ErrSyntax},
		{"ErrMismatch", "<xml><A>1</B></xml>", ErrSyntax},
		{"ErrEndTagPrefix", "<xml><A>1</AB></xml>", ErrSyntax},
		{"ErrTrailing", "<xml/><xml/>", ErrSyntax},
		{"ErrTrailingText", "<xml/>x", ErrSyntax},
		{"ErrTextInRoot", "<xml>x<A>1</A></xml>", ErrSyntax},
		{"ErrPI", "<xml><?php ?></xml>", ErrSyntax},
		{"ErrVersion", "<?xml version=\"0\"?><xml/>", ErrSyntax},
		{"ErrEncoding", "<?xml version=\"1.0\" encoding=\"GBK\"?><xml/>", ErrSyntax},
		{"ErrNoVersion", "<?xml ?><xml/>", ErrSyntax},
		{"ErrStylesheet", "<?xml-stylesheet href='x'?><xml/>", ErrSyntax},
		{"ErrUnclosedCDATA", "<xml><A><![CDATA[x</A></xml>", ErrSyntax},
		{"ErrUnclosedComment", "<xml><!-- </xml>", ErrSyntax},
		{"ErrDoubleDashComment", "<xml><!-- a -- b --></xml>", ErrSyntax},
		{"ErrControlChar", "<xml><A>\x01</A></xml>", ErrSyntax},
		{"ErrBadUTF8", "<xml><A>\xff</A></xml>", ErrSyntax},
		{"ErrBadName", "<xml><1A>1</1A></xml>", ErrSyntax},
		{"ErrAttrNoSpace", "<xml a='1'b='2'/>", ErrSyntax},
		{"ErrAttrUnquoted", "<xml a=1/>", ErrSyntax},
		{"ErrAttrLT", "<xml a='<'/>", ErrSyntax},
		{"ErrDeep", "<xml><A>" + strings.Repeat("<B>", MaxDepth+1) + strings.Repeat("</B>", MaxDepth+1) + "</A></xml>", ErrDepth},
		{"ErrSize", "<xml>" + strings.Repeat(" ", MaxSize) + "</xml>", ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := collect(tt.doc)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func TestParse_VisitErrorStops(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	err := Parse("<xml><A>1</A><B>2</B></xml>", func(string, string, bool) error {
		calls++
		return stop
	})
	assert.ErrorIs(t, err, stop)
	assert.Equal(t, 1, calls)
}

func TestParse_SubstringsDoNotAllocate(t *testing.T) {
	doc := "<xml><SuiteId><![CDATA[wwArchiveSuite01]]></SuiteId><InfoType><![CDATA[hit_keyword]]></InfoType><TimeStamp>1717000000</TimeStamp></xml>"
	var n int
	visit := func(name, value string, nested bool) error { n += len(value); return nil }
	allocs := testing.AllocsPerRun(100, func() { _ = Parse(doc, visit) })
	assert.Zero(t, allocs)
}

func TestValidChars(t *testing.T) {
	long := strings.Repeat("abcdefgh", 4)
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"", true},
		{long, true},
		{long + "\t\n\r" + long, true},
		{long + "你好" + long + "é", true},
		{long + "\x00", false},
		{long[:5] + "\x1f" + long, false},
		{long + "\x7f", true},
		{long + "\xff" + long, false},
		{long + "\xef\xbf\xbe", false}, // U+FFFE
		{long + "\xe4\xbd", false},     // truncated rune
	} {
		assert.Equal(t, tc.want, validChars(tc.s), "%q", tc.s)
	}
}

// BenchmarkParse_ManyComments guards against quadratic work: blanks held
// between many comments once made parsing time grow with the square of the
// input. ns/op should grow linearly with n.
func BenchmarkParse_ManyComments(b *testing.B) {
	for _, n := range []int{1000, 8000, 64000} {
		doc := "<xml><A>x" + strings.Repeat(" <!---->", n) + "y</A></xml>"
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if err := Parse(doc, func(string, string, bool) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

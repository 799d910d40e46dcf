package intake

import "testing"

func TestSubjectsOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"wecom.callback.archive.hit_keyword", "wecom.callback.archive.hit_keyword", true},
		{"wecom.callback.*.hit_keyword", "wecom.callback.archive.hit_keyword", true},
		{"wecom.callback.*.hit_keyword", "wecom.callback.archive.>", true},
		{"wecom.callback.*.hit_keyword", "wecom.callback.*.suite_ticket", false},
		{"wecom.callback.archive.>", "wecom.callback.zone.>", false},
		{">", "wecom.callback.zone.suite_ticket", true},
		{"wecom.callback.>", "wecom.callback", false},
		{"wecom.callback.*", "wecom.callback.a.b", false},
	} {
		if got := subjectsOverlap(c.a, c.b); got != c.want {
			t.Errorf("subjectsOverlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := subjectsOverlap(c.b, c.a); got != c.want {
			t.Errorf("subjectsOverlap(%q, %q) = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

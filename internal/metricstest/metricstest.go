// Package metricstest reads metric values for tests: from a registry (a
// fresh one per test) or from the text a /metrics endpoint serves.
package metricstest

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families gathers g and returns its metric families by name.
func Families(tb testing.TB, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatalf("gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// ParseText parses the Prometheus text format, as /metrics serves it.
func ParseText(tb testing.TB, r io.Reader) map[string]*dto.MetricFamily {
	tb.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		tb.Fatalf("parse metrics: %v", err)
	}
	return mfs
}

// Find returns the series of family name whose labels include every
// name=value pair of labels ("app", "archive", "kind", "hit_keyword", …),
// failing the test when the family or the series is missing.
func Find(tb testing.TB, mfs map[string]*dto.MetricFamily, name string, labels ...string) []*dto.Metric {
	tb.Helper()
	if len(labels)%2 != 0 {
		tb.Fatalf("labels must be name, value pairs: %q", labels)
	}
	mf, ok := mfs[name]
	if !ok {
		tb.Fatalf("metric %s not found", name)
	}
	var out []*dto.Metric
	for _, m := range mf.GetMetric() {
		if matches(m, labels) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		tb.Fatalf("metric %s has no series with %s; it has %s", name, pairs(labels), seriesList(mf))
	}
	return out
}

// Value is the sum over the series Find returns: counter and gauge values,
// and a histogram's sample count.
func Value(tb testing.TB, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	tb.Helper()
	var v float64
	for _, m := range Find(tb, mfs, name, labels...) {
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		default:
			tb.Fatalf("metric %s: unsupported type", name)
		}
	}
	return v
}

// LabelValues returns the distinct values of label across family name's
// series, sorted.
func LabelValues(tb testing.TB, mfs map[string]*dto.MetricFamily, name, label string) []string {
	tb.Helper()
	mf, ok := mfs[name]
	if !ok {
		tb.Fatalf("metric %s not found", name)
	}
	seen := map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				seen[l.GetValue()] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func pairs(labels []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

func seriesList(mf *dto.MetricFamily) string {
	var s []string
	for i, m := range mf.GetMetric() {
		if i == 10 {
			s = append(s, "…")
			break
		}
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName(), l.GetValue())
		}
		s = append(s, pairs(ls))
	}
	return strings.Join(s, " ")
}

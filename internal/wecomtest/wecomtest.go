// Package wecomtest holds test helpers that join the WeCom client and the
// simulator, which know nothing of each other.
package wecomtest

import (
	"context"
	"testing"

	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// CreateDemoRules creates the simulator's demo rules (wecomsim.DemoRules)
// in corp through c, over HTTP, as an operator would, and returns their ids.
func CreateDemoRules(ctx context.Context, tb testing.TB, c *wecom.Client, corp string) []string {
	tb.Helper()
	var ids []string
	for _, d := range wecomsim.DemoRules() {
		r := wecom.Rule{Name: d.Name}
		if len(d.Words) > 0 {
			r.Keyword = &wecom.Keyword{WordList: d.Words}
		}
		if len(d.Semantics) > 0 {
			r.Semantics = &wecom.Semantics{SemanticsList: d.Semantics}
		}
		id, err := c.CreateRule(ctx, corp, r)
		if err != nil {
			tb.Fatalf("create demo rule %s: %v", d.Name, err)
		}
		ids = append(ids, id)
	}
	return ids
}

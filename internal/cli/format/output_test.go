package format

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTable_Write: columns line up on a terminal, where a Chinese character takes
// two columns.
func TestTable_Write(t *testing.T) {
	var tb Table
	tb.Add("RULE_ID", "NAME", "CREATED")
	tb.Add("r1", "敏感词", "2026-11-21")
	tb.Add("r22", "ab", "2026-11-22")
	var b strings.Builder
	require.NoError(t, tb.Write(&b))
	assert.Equal(t, ""+
		"RULE_ID  NAME    CREATED\n"+
		"r1       敏感词  2026-11-21\n"+
		"r22      ab      2026-11-22\n", b.String())
}

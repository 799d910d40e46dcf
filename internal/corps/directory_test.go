package corps_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

func TestDirectory_Resolve(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := keyring(t, "k1", "k1")
	r := e.open(t, k)
	_, err := r.Seed(ctx, app, []corps.Seed{{CorpID: corpA, PermanentCode: permA}})
	require.NoError(t, err)
	m, err := r.Mirror(ctx, "", nil)
	require.NoError(t, err)
	t.Cleanup(m.Stop)
	d := corps.NewDirectory(map[string][]string{"zone": {"wwZone"}, "two": {"b", "a", "b"}}, m)

	for _, tt := range []struct {
		name, app, corp, want string
		err                   error
	}{
		{"OKFixed", "zone", "wwZone", "wwZone", nil},
		{"OKFixedOnly", "zone", "", "wwZone", nil},
		{"OKRegistry", app, corpA, corpA, nil},
		{"OKRegistryOnly", app, "", corpA, nil},
		{"OKFixedOfSeveral", "two", "b", "b", nil},
		{"ErrFixedUnknown", "zone", "wwOther", "", corps.ErrNotFound},
		{"ErrAmbiguous", "two", "", "", corps.ErrAmbiguous},
		{"ErrRegistryUnknown", app, corpB, "", corps.ErrNotFound},
		{"ErrNoApp", "nope", "", "", corps.ErrAmbiguous},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Resolve(tt.app, tt.corp)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	assert.Equal(t, []string{"a", "b"}, d.Corps("two"))

	t.Run("FollowsTheRegistry", func(t *testing.T) {
		_, err := r.Cancel(ctx, app, corpA, time.Time{}, corps.CauseOperator)
		require.NoError(t, err)
		natstest.WaitFor(t, 5*time.Second, func() error {
			if d.Has(app, corpA) {
				return fmt.Errorf("cancelled corp still served: %v", d.Corps(app))
			}
			return nil
		})
		_, err = d.Resolve(app, corpA)
		require.ErrorIs(t, err, corps.ErrNotFound)
		assert.Empty(t, d.Corps(app))
	})
	t.Run("NoRegistry", func(t *testing.T) {
		d := corps.NewDirectory(nil, nil)
		assert.Empty(t, d.Corps(app))
		_, err := d.Resolve(app, corpA)
		require.ErrorIs(t, err, corps.ErrNotFound)
	})
}

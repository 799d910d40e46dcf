package corps

import (
	"errors"
	"fmt"
	"slices"
)

// ErrAmbiguous: a corp was left out for an app that serves several (or
// none), so there is no "only corp" to take.
var ErrAmbiguous = errors.New("corps: app has several corps; name one")

// Directory answers the one question every part of the receiver asks: which
// corps does an app serve, and is this one of them. It is the only place
// that answers it (issue 10), so a corp authorized or cancelled at run time
// is served, or dropped, everywhere at once.
//
// An app's corps are either fixed (a zone app's one corp, or an archive
// app's configured corps when the registry is off) or whatever the
// registry's Mirror holds as active for it. It is safe for concurrent use;
// a Directory's answers change as the Mirror does, never its fixed part.
type Directory struct {
	fixed  map[string][]string // app → sorted corp ids
	mirror *Mirror             // nil: no registry
}

// NewDirectory returns a Directory serving fixed's corps for the apps it
// names and m's active corps for every other app. m may be nil (no
// registry): an app not in fixed then serves no corp.
func NewDirectory(fixed map[string][]string, m *Mirror) *Directory {
	d := &Directory{fixed: make(map[string][]string, len(fixed)), mirror: m}
	for app, ids := range fixed {
		s := slices.Clone(ids)
		slices.Sort(s)
		d.fixed[app] = slices.Compact(s)
	}
	return d
}

// Corps returns the ids of the corps app serves now, sorted. The slice is
// the caller's.
func (d *Directory) Corps(app string) []string {
	if ids, ok := d.fixed[app]; ok {
		return slices.Clone(ids)
	}
	if d.mirror == nil {
		return nil
	}
	return d.mirror.Active(app)
}

// Has reports whether app serves corp now.
func (d *Directory) Has(app, corp string) bool {
	if ids, ok := d.fixed[app]; ok {
		_, found := slices.BinarySearch(ids, corp)
		return found
	}
	if d.mirror == nil {
		return false
	}
	c, ok := d.mirror.Get(app, corp)
	return ok && c.State == Active
}

// Resolve names the corp a request for app is about: corp itself if app
// serves it, app's only corp if corp is empty. It fails with ErrNotFound
// (a corp the app does not serve, or no longer: cancelled) or ErrAmbiguous
// (corp empty, and not exactly one corp). Errors name the corp and app,
// and list the app's corps when there are a few.
func (d *Directory) Resolve(app, corp string) (string, error) {
	if corp != "" {
		if d.Has(app, corp) {
			return corp, nil
		}
		return "", fmt.Errorf("%w: app %s has no corp %q%s", ErrNotFound, app, corp, d.hint(app))
	}
	ids := d.Corps(app)
	if len(ids) == 1 {
		return ids[0], nil
	}
	return "", fmt.Errorf("%w: app %s has %d corps%s", ErrAmbiguous, app, len(ids), d.hint(app))
}

// hintMax bounds the corps an error lists: with thousands, a list helps
// nobody (`receiver corps list` does).
const hintMax = 10

func (d *Directory) hint(app string) string {
	ids := d.Corps(app)
	if len(ids) == 0 || len(ids) > hintMax {
		return ""
	}
	return fmt.Sprintf(" (have %v)", ids)
}

package intake

import "time"

// SetFloorEvery has Consume read its consumer's ack floor every d rather
// than every defaultFloorEvery. Call it before Consume.
func SetFloorEvery(s *Store, d time.Duration) { s.opts.floorEvery = d }

// SetDedupClock gives a Store that keeps its ids itself (WithLocalDedup)
// the clock it expires them by, and loads them from the stream by. Call
// it before Setup.
func SetDedupClock(s *Store, now func() time.Time) { s.dedup.now = now }

// SetLoadBudget bounds how long Setup reads the duplicate window's ids
// back (WithLocalDedup). Call it before Setup.
func SetLoadBudget(s *Store, d time.Duration) { s.opts.loadBudget = d }

// SweepDedup runs one sweep of RunDedup and returns the ids held.
func SweepDedup(s *Store) int { return s.dedup.sweep() }

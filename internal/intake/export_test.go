package intake

import "time"

// SetFloorEvery has Consume read its consumer's ack floor every d rather
// than every defaultFloorEvery. Call it before Consume.
func SetFloorEvery(s *Store, d time.Duration) { s.opts.floorEvery = d }

//go:build !unix

package app_test

import "time"

// processCPU is unknown here; see cputime_unix_test.go.
func processCPU() (time.Duration, bool) { return 0, false }

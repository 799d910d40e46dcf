//go:build !unix

package main

import "time"

// processCPU is unknown here; see cputime_unix_test.go.
func processCPU() (time.Duration, bool) { return 0, false }

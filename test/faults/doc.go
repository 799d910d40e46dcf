// Package faults holds the fault tests: the receiver, the WeCom simulator
// and nats-server run as separate OS processes on loopback, get killed,
// stopped and fed WeCom's failures, and afterwards the hit events and
// callback records in NATS are held against the simulator's ground truth.
//
// The tests are behind the "faults" build tag, so the default go test ./...
// does not build them:
//
//	go test -tags faults ./test/faults               # short form, as .ci/run
//	FAULTS_ROUNDS=20 go test -tags faults -timeout 90m -v ./test/faults
//
// The package has no code besides its tests. It leaves the behaviour under
// test to the receiver's own packages and only observes it from outside, as
// an operator would; README.md lists the scenarios.
package faults

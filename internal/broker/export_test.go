package broker

import "github.com/nats-io/nats-server/v2/server"

// ServerOf exposes the embedded server to the tests.
func ServerOf(b *Broker) *server.Server { return b.srv }

// RedactURL exposes redactURL to the tests.
var RedactURL = redactURL

// AuthUsers exposes authUsers to the tests.
var AuthUsers = authUsers

// FreeBytes exposes freeBytes to the tests.
var FreeBytes = freeBytes

// CreateSeed exposes createSeed to the tests.
var CreateSeed = createSeed

// RefusedBatchSetting exposes refusedBatchSetting to the tests.
var RefusedBatchSetting = refusedBatchSetting

package config

import "github.com/wecomhit/wecomhit/internal/secret"

// Secret is a configuration value that must not leak (secret.Secret): a
// Config can be printed or logged whole. The alias keeps config.Secret the
// name its users know, while packages that only hold secrets import
// package secret instead of config.
type Secret = secret.Secret

package broker

import "fmt"

// SetLimit is the body of a stage's With... option for one of its stream's
// limits (max age, duplicate window, max bytes, a publish window): a
// negative v is an error wrapping invalid that names the option, zero keeps
// the default *field already holds, and anything else is set. One rule for
// every stage, so that zero means "the default" in code as it does in the
// configuration, and no stage reads a negative value as "off".
func SetLimit[T ~int | ~int32 | ~int64](invalid error, option string, v T, field *T) error {
	if v < 0 {
		return fmt.Errorf("%w: %s(%v): negative", invalid, option, v)
	}
	if v > 0 {
		*field = v
	}
	return nil
}

// SetReplicas is SetLimit for a stream's replicas, which JetStream caps at
// 5.
func SetReplicas(invalid error, option string, n int, field *int) error {
	if n > 5 {
		return fmt.Errorf("%w: %s(%d): want 1 to 5", invalid, option, n)
	}
	return SetLimit(invalid, option, n, field)
}

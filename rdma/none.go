package rdma

import "context"

// None returns verbs of a node without RDMA devices: Devices lists none and
// Listen and Dial fail with ErrNoDevice. It is what Native is without the
// rdma build tag, and lets a test run one side of a connection without RDMA.
func None() Verbs { return noVerbs{} }

// noVerbs is the Verbs of a node without RDMA.
type noVerbs struct{}

var _ Verbs = noVerbs{}

// Devices returns none.
func (noVerbs) Devices() ([]string, error) { return nil, nil }

// Listen fails: there is no device to listen on.
func (noVerbs) Listen(string, Config) (Listener, error) { return nil, ErrNoDevice }

// Dial fails: there is no device to connect from.
func (noVerbs) Dial(context.Context, string, Config) (QueuePair, error) { return nil, ErrNoDevice }

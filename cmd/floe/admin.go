package main

import "context"

// adminCommands returns the operator subcommands (topics, groups, cluster)
// keyed by name. Each takes the arguments after its name.
func adminCommands() map[string]func(ctx context.Context, args []string) error {
	return map[string]func(ctx context.Context, args []string) error{}
}

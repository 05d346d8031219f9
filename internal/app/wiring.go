package app

import (
	"github.com/spf13/cobra"

	"github.com/applayer/applayer/lab"
)

// commands is the wiring table of subcommands: one entry per system.
func commands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		versionCommand(g),
		labCommand(g),
		socketsCommand(g),
		httpCommand(g),
		dnsCommand(g),
		digCommand(g),
		torrentCommand(g),
	}
}

// labKinds is the wiring table of what the lab can run: every kind of
// service, by the name topology files use.
func labKinds() *lab.Kinds {
	var ks []lab.Kind
	ks = append(ks, socketKinds()...)
	ks = append(ks, httpKinds()...)
	ks = append(ks, dnsKinds()...)
	ks = append(ks, proxyKinds()...)
	ks = append(ks, dnsResolverKinds()...)
	return lab.NewKinds(ks...)
}

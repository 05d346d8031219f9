package app

import (
	"slices"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/cdn"
	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/dns/resolver"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/mail"
	"github.com/applayer/applayer/mail/mailexp"
	"github.com/applayer/applayer/sockets"
	"github.com/applayer/applayer/stream"
	"github.com/applayer/applayer/torrent/dht"
	"github.com/applayer/applayer/torrent/swarm"
	"github.com/applayer/applayer/torrent/tracker"
	"github.com/applayer/applayer/web/client"
	"github.com/applayer/applayer/web/proxy"
	"github.com/applayer/applayer/web/server"
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
		mailCommand(g),
		streamCommand(g),
		cdnCommand(g),
		traceCommand(g),
	}
}

// labKinds is the wiring table of what the lab can run: every kind of
// service, by the name topology files use. Each system declares its kinds
// beside its code (LabKinds in the package's labkind.go).
func labKinds() *lab.Kinds {
	return lab.NewKinds(slices.Concat(
		sockets.LabKinds(),
		server.LabKinds(),
		authority.LabKinds(),
		proxy.LabKinds(),
		resolver.LabKinds(),
		tracker.LabKinds(),
		swarm.LabKinds(),
		dht.LabKinds(),
		mail.LabKindsWith(mail.LabPolicy()),
		stream.LabKinds(),
		cdn.LabKinds(),
	)...)
}

// labScenarios is the wiring table of the scenarios `lab scenario` plays:
// each system declares its own beside its code (LabScenarios in the
// package's labscenario.go).
func labScenarios() *lab.Scenarios {
	return lab.NewScenarios(slices.Concat(
		resolver.LabScenarios(),
		client.LabScenarios(),
		mailexp.LabScenarios(),
	)...)
}

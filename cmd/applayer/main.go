// Command applayer is the Internet's application layer in one binary; see
// "applayer --help".
package main

import (
	"os"

	"github.com/applayer/applayer/internal/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

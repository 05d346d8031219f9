package pop3d

import (
	"errors"
	"strings"
)

// MaxLine is the longest command line accepted, CRLF included (RFC 2449
// section 4: 255 octets).
const MaxLine = 255

// Errors of ParseCommand.
var (
	ErrEmpty    = errors.New("empty command")
	ErrTooLong  = errors.New("command line too long")
	ErrBadChars = errors.New("control character in command")
	ErrKeyword  = errors.New("bad command keyword")
	ErrArgs     = errors.New("too many arguments")
)

// Command is a parsed POP3 command: the keyword upper-cased and its
// arguments (at most 2 for every command of RFC 1939, 40 octets each;
// PASS keeps the rest of the line as one argument, spaces included).
type Command struct {
	Name string
	Args []string
}

// ParseCommand parses one command line (without its CRLF). It accepts
// what RFC 1939 and 2449 allow: a 3-4 letter keyword, then arguments
// separated by single spaces.
func ParseCommand(line string) (Command, error) {
	if len(line)+2 > MaxLine {
		return Command{}, ErrTooLong
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 || c == 0x7f {
			return Command{}, ErrBadChars
		}
	}
	if line == "" {
		return Command{}, ErrEmpty
	}
	name, rest, hasArgs := strings.Cut(line, " ")
	if len(name) < 3 || len(name) > 4 {
		return Command{}, ErrKeyword
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return Command{}, ErrKeyword
		}
	}
	cmd := Command{Name: strings.ToUpper(name)}
	if !hasArgs {
		return cmd, nil
	}
	if cmd.Name == "PASS" {
		// RFC 1939 7: the password may contain spaces.
		cmd.Args = []string{rest}
		return cmd, nil
	}
	for _, a := range strings.Split(rest, " ") {
		if a == "" {
			continue
		}
		if len(a) > 40 || len(cmd.Args) == 2 {
			return Command{}, ErrArgs
		}
		cmd.Args = append(cmd.Args, a)
	}
	return cmd, nil
}

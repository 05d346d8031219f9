// Command mailaccess is the client of bench/mail-access.sh: the same IMAP
// and POP3 client for applayer and Dovecot. Each run does one operation
// and prints "OP N SECONDS" (messages and wall time).
//
//	mailaccess -imap ADDR -user U -pass P fill BOX N [needle-every]
//	mailaccess -imap ADDR ... append BOX N
//	mailaccess -imap ADDR ... fetch-full BOX
//	mailaccess -imap ADDR ... fetch-env BOX
//	mailaccess -imap ADDR ... search BOX WORD
//	mailaccess -pop3 ADDR ... retr N
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/applayer/applayer/mail/mailtest"
)

func main() {
	imapAddr := flag.String("imap", "", "IMAP server (plain, LOGIN)")
	pop3Addr := flag.String("pop3", "", "POP3 server (plain, USER/PASS)")
	sync := flag.Bool("sync", false, "after logging in (and selecting), print \"ready\" and wait for a line on stdin; after the operation, wait for another before logging out (so the caller measures the operation alone)")
	user := flag.String("user", "bob@hamburger.edu", "user")
	pass := flag.String("pass", "s3cret", "password")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		log.Fatal("no operation")
	}
	op := args[0]
	in := bufio.NewReader(os.Stdin)
	var start time.Time
	// ready marks the end of the setup (login, select), done the end of
	// the operation.
	ready := func() {
		if *sync {
			fmt.Println("ready")
			in.ReadString('\n')
		}
		start = time.Now()
	}
	var elapsed time.Duration
	done := func(n int) {
		elapsed = time.Since(start)
		if *sync {
			fmt.Printf("%s %d %.4f\n", op, n, elapsed.Seconds())
			in.ReadString('\n')
		}
	}
	var n int
	var err error
	if op == "retr" {
		count, _ := strconv.Atoi(args[1])
		n, err = retr(*pop3Addr, *user, *pass, count, ready, done)
	} else {
		n, err = imapOp(*imapAddr, *user, *pass, op, args[1:], ready, done)
	}
	if err != nil {
		log.Fatalf("%s: %v", op, err)
	}
	if !*sync {
		fmt.Printf("%s %d %.4f\n", op, n, elapsed.Seconds())
	}
}

func imapOp(addr, user, pass, op string, args []string, ready func(), done func(int)) (int, error) {
	var opts *imapclient.Options
	if os.Getenv("IMAP_DEBUG") != "" {
		opts = &imapclient.Options{DebugWriter: os.Stderr}
	}
	c, err := imapclient.DialInsecure(addr, opts)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		return 0, err
	}
	defer func() { c.Logout().Wait() }()
	box := args[0]
	switch op {
	case "fill", "append":
		count, _ := strconv.Atoi(args[1])
		needle := 0
		if len(args) > 2 {
			needle, _ = strconv.Atoi(args[2])
		}
		c.Create(box, nil).Wait() // may exist
		ready()
		// Pipelined, at most 32 APPENDs in flight.
		var cmds []*imapclient.AppendCommand
		for i := range count {
			m := mailtest.BenchMessage(i, needle)
			ac := c.Append(box, int64(len(m)), &imap.AppendOptions{Time: time.Unix(1_796_000_000+int64(i), 0)})
			ac.Write(m)
			ac.Close()
			cmds = append(cmds, ac)
			if len(cmds) == 32 || i == count-1 {
				for _, ac := range cmds {
					if _, err := ac.Wait(); err != nil {
						return 0, err
					}
				}
				cmds = cmds[:0]
			}
		}
		done(count)
		return count, nil
	case "fetch-full", "fetch-env":
		sel, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return 0, err
		}
		opts := &imap.FetchOptions{UID: true, Envelope: true, Flags: true, RFC822Size: true}
		if op == "fetch-full" {
			opts = &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
		}
		ready()
		fc := c.Fetch(imap.SeqSet{{Start: 1, Stop: sel.NumMessages}}, opts)
		n := 0
		for m := fc.Next(); m != nil; m = fc.Next() {
			for item := m.Next(); item != nil; item = m.Next() {
				if bs, ok := item.(imapclient.FetchItemDataBodySection); ok {
					io.Copy(io.Discard, bs.Literal)
				}
			}
			n++
		}
		err = fc.Close()
		done(n)
		return n, err
	case "search":
		sel, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return 0, err
		}
		ready()
		data, err := c.Search(&imap.SearchCriteria{Text: []string{args[1]}}, nil).Wait()
		if err != nil {
			return 0, err
		}
		done(int(sel.NumMessages))
		fmt.Fprintf(os.Stderr, "search: %d matches\n", len(data.AllSeqNums()))
		return int(sel.NumMessages), nil
	}
	return 0, fmt.Errorf("unknown operation %s", op)
}

// retr downloads count messages with one POP3 session (pipelined RETRs,
// keeping them: no DELE).
func retr(addr, user, pass string, count int, ready func(), done func(int)) (int, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 64<<10)
	w := bufio.NewWriter(nc)
	status := func() error {
		l, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(l, "+OK") {
			return fmt.Errorf("POP3: %s", strings.TrimSpace(l))
		}
		return nil
	}
	if err := status(); err != nil {
		return 0, err
	}
	for _, cmd := range []string{"USER " + user, "PASS " + pass} {
		fmt.Fprintf(w, "%s\r\n", cmd)
		w.Flush()
		if err := status(); err != nil {
			return 0, err
		}
	}
	ready()
	const window = 50
	sent, got := 0, 0
	for got < count {
		for sent < count && sent-got < window {
			sent++
			fmt.Fprintf(w, "RETR %d\r\n", sent)
		}
		w.Flush()
		if err := status(); err != nil {
			return got, err
		}
		for {
			l, err := r.ReadSlice('\n')
			if err != nil && err != bufio.ErrBufferFull {
				return got, err
			}
			if string(l) == ".\r\n" {
				break
			}
		}
		got++
	}
	done(got)
	fmt.Fprintf(w, "QUIT\r\n")
	w.Flush()
	status()
	return got, nil
}

package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/mail/queue"
)

func mailQueueCommand(g *globals) *cobra.Command {
	var admin, spool string
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "List, flush or delete the mail queue's messages",
		Long: `Talks to a running 'applayer mail serve' through its --admin listener
(--admin ADDR), or reads the --spool directory directly (list, delete).`,
		Example: `  applayer mail serve --domain hamburger.edu --db /tmp/mail-queue.db --spool /tmp/mail-queue-spool --listen 127.0.0.1:2528 --admin 127.0.0.1:9926 &
  applayer mail queue list --admin 127.0.0.1:9926   # -> 0 messages
  applayer mail queue flush --admin 127.0.0.1:9926   # -> flushed 0
  applayer mail queue list --spool /tmp/mail-queue-spool   # -> 0 messages`,
	}
	cmd.PersistentFlags().StringVar(&admin, "admin", "", "the running server's admin `ADDR`")
	cmd.PersistentFlags().StringVar(&spool, "spool", "", "the spool `DIR` (without --admin)")
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(method, path string) ([]byte, error) {
		req, err := http.NewRequest(method, "http://"+admin+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
		}
		return b, nil
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the waiting messages: id, age, size, sender, recipients, attempts, last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var sts []queue.Status
			switch {
			case admin != "":
				b, err := call("GET", "/mail/queue")
				if err != nil {
					return fmt.Errorf("mail queue list: %w", err)
				}
				if err := json.Unmarshal(b, &sts); err != nil {
					return fmt.Errorf("mail queue list: %w", err)
				}
			case spool != "":
				var err error
				if sts, err = queue.ReadSpool(spool); err != nil {
					return err
				}
			default:
				return errors.New("mail queue list: give --admin or --spool")
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tAGE\tSIZE\tFROM\tTO\tATTEMPTS\tLAST ERROR")
			for _, s := range sts {
				from := s.From
				if from == "" {
					from = "<>"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\n", s.ID, time.Since(s.Received).Round(time.Second), s.Size, from, strings.Join(s.To, ","), s.Attempts, s.LastError)
			}
			fmt.Fprintf(tw, "%d messages\n", len(sts))
			return tw.Flush()
		},
	}
	flush := &cobra.Command{
		Use:   "flush",
		Short: "Attempt every waiting message now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if admin == "" {
				return errors.New("mail queue flush: give --admin (the running server's)")
			}
			b, err := call("POST", "/mail/queue/flush")
			if err != nil {
				return fmt.Errorf("mail queue flush: %w", err)
			}
			g.stdout.Write(b)
			return nil
		},
	}
	var all bool
	del := &cobra.Command{
		Use:   "delete ID... | --all",
		Short: "Remove messages from the queue (no bounce is sent)",
		Example: `  applayer mail serve --domain hamburger.edu --db /tmp/mail-del.db --spool /tmp/mail-del-spool --listen 127.0.0.1:2531 --admin 127.0.0.1:9931 &
  applayer mail queue delete --all --admin 127.0.0.1:9931   # -> deleted 0 messages
  applayer mail queue delete --all --spool /tmp/mail-del-spool   # -> deleted 0 messages`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.MinimumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if admin == "" && spool == "" {
				return errors.New("mail queue delete: give --admin or --spool")
			}
			if all {
				// Like postsuper -d ALL: every message waiting now.
				var sts []queue.Status
				if admin != "" {
					b, err := call("GET", "/mail/queue")
					if err != nil {
						return fmt.Errorf("mail queue delete: %w", err)
					}
					if err := json.Unmarshal(b, &sts); err != nil {
						return fmt.Errorf("mail queue delete: %w", err)
					}
				} else {
					var err error
					if sts, err = queue.ReadSpool(spool); err != nil {
						return err
					}
				}
				for _, st := range sts {
					args = append(args, st.ID)
				}
			}
			for _, id := range args {
				if admin != "" {
					if _, err := call("POST", "/mail/queue/delete?id="+url.QueryEscape(id)); err != nil {
						return fmt.Errorf("mail queue delete: %w", err)
					}
				} else if err := queue.DeleteSpooled(spool, id); err != nil {
					return err
				}
				if !all {
					fmt.Fprintf(g.stdout, "deleted %s\n", id)
				}
			}
			if all {
				fmt.Fprintf(g.stdout, "deleted %d messages\n", len(args))
			}
			return nil
		},
	}
	del.Flags().BoolVar(&all, "all", false, "delete every waiting message")
	list.Example = `  applayer mail serve --domain hamburger.edu --db /tmp/mail-list.db --spool /tmp/mail-list-spool --listen 127.0.0.1:2532 --admin 127.0.0.1:9932 &
  applayer mail queue list --admin 127.0.0.1:9932   # -> 0 messages
  applayer mail queue list --spool /tmp/mail-list-spool   # -> 0 messages`
	flush.Example = `  applayer mail serve --domain hamburger.edu --db /tmp/mail-flush.db --spool /tmp/mail-flush-spool --listen 127.0.0.1:2533 --admin 127.0.0.1:9933 &
  applayer mail queue flush --admin 127.0.0.1:9933   # -> flushed 0`
	cmd.AddCommand(list, flush, del)
	return cmd
}

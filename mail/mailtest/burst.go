// Package mailtest has helpers for tests of applayer's mail servers, such
// as the kill -9 tests of the SMTP server and its queue.
package mailtest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Burst sends messages from one address to another over several SMTP
// connections until Stop, each with a unique Subject ("m<worker>-<n>"),
// and records which ones the server answered with 250. A connection
// ends at its first failure (a server killed mid-message: not acked).
type Burst struct {
	mu    sync.Mutex
	acked []string
	stop  chan struct{}
	wg    sync.WaitGroup
}

// StartBurst starts workers connections to the SMTP server at addr.
func StartBurst(addr, from, to string, workers int) *Burst {
	b := &Burst{stop: make(chan struct{})}
	for w := range workers {
		b.wg.Go(func() {
			c, err := smtp.Dial(addr)
			if err != nil {
				return
			}
			defer c.Close()
			for i := 0; ; i++ {
				select {
				case <-b.stop:
					return
				default:
				}
				id := fmt.Sprintf("m%d-%d", w, i)
				if err := c.SendMail(from, []string{to}, strings.NewReader("Subject: "+id+"\r\n\r\nburst\r\n")); err != nil {
					return
				}
				b.mu.Lock()
				b.acked = append(b.acked, id)
				b.mu.Unlock()
			}
		})
	}
	return b
}

// WaitAcked waits until n messages were answered 250, or d has passed.
func (b *Burst) WaitAcked(n int, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		b.mu.Lock()
		got := len(b.acked)
		b.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Stop ends the burst, waits for its connections and returns the
// Subjects of the messages answered 250.
func (b *Burst) Stop() []string {
	close(b.stop)
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.acked)
}

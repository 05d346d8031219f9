package webmail_test

import (
	"context"
	"flag"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/applayer/applayer/internal/testkit/browser"
)

// docsDir is the repository's docs/, where the screenshots are kept.
var updateScreenshots = flag.Bool("update-screenshots", false, "write the web mail's screenshots to docs/ (for the documentation)")

// docsDir is where the screenshots go: docs/ with -update-screenshots,
// else the test's temporary directory (a test run leaves the tree alone).
func docsDir(t *testing.T) string {
	if !*updateScreenshots {
		return t.TempDir()
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs")
}

// In a real browser: Bob logs in, reads Alice's message, replies; the
// reply arrives in Alice's INBOX. Screenshots of the inbox and the
// message go to docs/ with -update-screenshots.
func TestBrowserReadAndReply(t *testing.T) {
	e := newEnv(t, nil)
	e.sendMail(t, "alice@crepes.fr", "bob@hamburger.edu", aliceMsg)
	e.sendMail(t, "alice@crepes.fr", "bob@hamburger.edu", "From: Alice <alice@crepes.fr>\r\nTo: bob@hamburger.edu\r\nSubject: Lab report due Friday\r\n\r\nDon't forget.\r\n")
	ctx := browser.New(t, browser.WindowSize(1100, 700), browser.Resolve("mail.hamburger.edu", "127.0.0.1"))
	_, port, _ := net.SplitHostPort(e.web.Addrs()[0].String())
	site := "http://mail.hamburger.edu:" + port
	err := chromedp.Do(ctx,
		chromedp.Navigate(site+"/login"),
		chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), "bob@hamburger.edu"),
		chromedp.SendKeys(chromedp.ID("password"), "s3cret"),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS("table")),
	)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	inbox, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if !strings.Contains(inbox, "Crepes tonight") || !strings.Contains(inbox, "Lab report due Friday") {
		t.Fatalf("inbox shows %q", inbox)
	}
	browser.Screenshot(t, ctx, filepath.Join(docsDir(t), "webmail-inbox.png"))
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.Search(`//a[text()="Crepes tonight"]`)),
		chromedp.WaitVisible(chromedp.ID("reply")),
	)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	msgText, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if !strings.Contains(msgText, "Bring the batter, Bob.") || !strings.Contains(msgText, "recipe.txt") || !strings.Contains(msgText, "Remote images in this message were blocked") {
		t.Errorf("message page shows %q", msgText)
	}
	browser.Screenshot(t, ctx, filepath.Join(docsDir(t), "webmail-message.png"))
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("reply")),
		chromedp.WaitVisible(chromedp.ID("body")),
		chromedp.SendKeys(chromedp.ID("body"), "I'll bring it. — Bob\n"),
		chromedp.Click(chromedp.ID("send")),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
	)
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	notice, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".notice")))
	if notice != "Message sent." {
		t.Errorf("after send: %q", notice)
	}
	// The reply arrives in Alice's INBOX, quoting her and threaded.
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && body == "" {
		if msgs, _ := e.mail.Store().Messages(context.Background(), "alice@crepes.fr", "INBOX"); len(msgs) == 1 {
			b, _ := e.mail.Store().Body(context.Background(), "alice@crepes.fr", "INBOX", msgs[0].UID)
			body = string(b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"Subject: Re: Crepes tonight", "In-Reply-To: <crepes-1@crepes.fr>", "I'll bring it.", "> Bring the batter, Bob."} {
		if !strings.Contains(body, want) {
			t.Errorf("Alice's INBOX: want %q in\n%s", want, body)
		}
	}
	// A copy in Bob's Sent, and Alice's message marked answered.
	if sent, _ := e.mail.Store().Messages(context.Background(), "bob@hamburger.edu", "Sent"); len(sent) != 1 {
		t.Errorf("Bob's Sent has %d messages, want 1", len(sent))
	}
}
